"""Fixtures shared by the test files.

The expensive objects (vit_b models with random weights, their checkpoint on disk) are built once per
session: a vit_b image-encoder pass takes many seconds on a 2-core CPU. `file_host` is a local HTTP server
that the download tests fetch from instead of the internet.
"""

from __future__ import annotations

import http.server
import os
import threading

import pytest
import torch

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
# dtype="auto" would pick bfloat16 on a CPU with AMX: the parity tests compare float32 with the official model,
# so they run in float32 on every machine (tests/predictor/test_precision.py tests the choice itself).
os.environ.setdefault("SAM_FROM_SCRATCH_DTYPE", "float32")


def perturb_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Add Gaussian noise to every float tensor of the state dict, so no weight stays at its zero/one init.

    Random weights that start at zero (relative positions, biases) would hide bugs in the code that uses them.
    Non-persistent buffers (the pixel mean/std constants) are not in a checkpoint and stay exact.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():  # shares storage with the parameters and buffers
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * std)
    return model


@pytest.fixture(scope="session")
def official_vit_b():
    """The official implementation's vit_b with perturbed random weights (eval mode)."""
    from segment_anything import sam_model_registry as official_registry

    torch.manual_seed(0)
    model = official_registry["vit_b"]()
    # The pixel mean/std buffers are not in the checkpoint: leave them exact.
    perturb_(model.image_encoder, seed=1)
    perturb_(model.prompt_encoder, seed=2)
    perturb_(model.mask_decoder, seed=3)
    return model.eval()


@pytest.fixture(scope="session")
def random_vit_b_checkpoint(official_vit_b, tmp_path_factory):
    """official_vit_b's state dict saved the way the official sam_vit_b_01ec64.pth is (a plain state dict)."""
    path = tmp_path_factory.mktemp("weights") / "sam_vit_b_random.pth"
    torch.save(official_vit_b.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def ours_vit_b(random_vit_b_checkpoint):
    """Our vit_b loaded from random_vit_b_checkpoint through the public registry (with the fast paths)."""
    from sam_from_scratch import sam_model_registry

    return sam_model_registry["vit_b"](checkpoint=random_vit_b_checkpoint)


@pytest.fixture(scope="session")
def plain_vit_b(random_vit_b_checkpoint):
    """Our plain vit_b (the model of notebooks 02-08, no fast paths) loaded from random_vit_b_checkpoint."""
    from sam_from_scratch.build import build_sam
    from sam_from_scratch.config import CONFIGS

    return build_sam(CONFIGS["vit_b"], checkpoint=random_vit_b_checkpoint, fast=False)


def make_scene(height: int, width: int, seed: int = 0):
    """A test picture: six flat-coloured discs and boxes on a colour gradient, with mild noise (uint8 HxWx3)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.stack([40 + 80 * xx / width, 40 + 80 * yy / height, np.full(xx.shape, 90.0)], axis=-1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.08, 0.2) * min(height, width)
        color = rng.uniform(0, 255, 3)
        if rng.random() < 0.5:
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        else:
            inside = (abs(xx - cx) < r) & (abs(yy - cy) < 0.6 * r)
        image[inside] = color
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def scene_images():
    """Non-square test pictures (see make_scene): 'landscape' 333x517 and 'portrait' 517x333."""
    return {"landscape": make_scene(333, 517, seed=0), "portrait": make_scene(517, 333, seed=1)}


@pytest.fixture(scope="session")
def vit_b_predictors(scene_images, ours_vit_b, official_vit_b):
    """vit_b_predictors(name) -> (image, our predictor, official predictor) for a scene image, both embedded.

    A vit_b pass at 1024 pixels takes seconds on a CPU: each picture is embedded once per test run, and every
    test that compares with the official embedding of these pictures shares it.
    """
    from segment_anything import SamPredictor as OfficialPredictor

    from sam_from_scratch import SamPredictor

    cache = {}

    def get(name):
        if name not in cache:
            image = scene_images[name]
            ours, official = SamPredictor(ours_vit_b), OfficialPredictor(official_vit_b)
            ours.set_image(image)
            official.set_image(image)
            cache[name] = image, ours, official
        return cache[name]

    return get


def official_sam_for_config(config):
    """The official Sam built with one of our SamConfigs (e.g. CONFIGS["tiny"]), random weights, eval mode."""
    from functools import partial

    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = config.image_size // config.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=config.image_size, patch_size=config.patch_size, embed_dim=config.encoder_embed_dim,
            depth=config.encoder_depth, num_heads=config.encoder_num_heads, mlp_ratio=config.mlp_ratio,
            out_chans=config.prompt_embed_dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=config.window_size, global_attn_indexes=config.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size), mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer_dim=config.prompt_embed_dim, iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth, embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_num_heads,
            ),
        ),
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    ).eval()


@pytest.fixture(scope="session")
def official_tiny_random():
    """The official Sam with our tiny config and perturbed random weights: cheap to run, and its input size is
    not 1024 (nor its low-resolution masks 256)."""
    from sam_from_scratch.config import CONFIGS

    torch.manual_seed(0)
    return perturb_(official_sam_for_config(CONFIGS["tiny"]), seed=4, std=0.05)


class LocalFileHost:
    """A threaded HTTP server on 127.0.0.1, on a free port the system picks, serving bytes at URL paths.

    What each path does is set on the host, before or between requests:
    - ``files[path] = body``: GET path answers 200 with the body (a path not in ``files`` answers 404);
    - ``cut_after[path] = n``: the full Content-Length is announced but only n bytes are sent, then the
      connection closes (a dropped transfer);
    - ``stall.add(path)``: the request is read and nothing is answered until the host stops (a hung server);
    - ``hang_up.add(path)``: the connection closes without any answer.
    ``requests`` lists the paths asked for, in order; ``url`` is the base address, without a trailing slash.
    """

    STALL_LIMIT_S = 60.0  # a stalled answer never outlives this, even if the host is never stopped

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_after: dict[str, int] = {}
        self.stall: set[str] = set()
        self.hang_up: set[str] = set()
        self.requests: list[str] = []
        self._stopping = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append(self.path)
                self.close_connection = True  # one request per connection: a cut body ends the connection
                if self.path in host.stall:
                    host._stopping.wait(host.STALL_LIMIT_S)
                    return
                if self.path in host.hang_up:
                    return  # nothing written: the client sees the connection close before a status line
                body = host.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: host.cut_after.get(self.path, len(body))])

            def log_message(self, *args) -> None:
                pass

        return Handler

    def stop(self) -> None:
        """Stop serving (stalled requests are let go); calling it again does nothing."""
        self._stopping.set()
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self.thread.join()


@pytest.fixture(scope="module")
def one_thread():
    """The small model's steps are too small to share between threads: one is faster on a busy machine
    (for a module of fine-tuning tests: `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def star_dataset(folder, count: int):
    """`count` star scenes (sam_from_scratch.training.stars) saved as folder/images + folder/masks."""
    from sam_from_scratch.training.datasets import save_folder_dataset
    from sam_from_scratch.training.stars import STAR_SEED, make_star_scene

    scenes = [make_star_scene(STAR_SEED, i) for i in range(count)]
    return save_folder_dataset(folder, [(f"star_{i}", scene.image, scene.masks) for i, scene in enumerate(scenes)])


def run_cli(capsys, *args):
    """The command line run in-process: (exit code, stdout, stderr); argparse's own errors give their code."""
    from sam_from_scratch.cli import main

    try:
        code = main(list(args))
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the command line loads a model: its refusals of bad input come first."""
    from sam_from_scratch import cli

    def load(*args, **kwargs):
        pytest.fail("the model was loaded before the refusal")

    monkeypatch.setattr(cli, "_load_model", load)


@pytest.fixture
def file_host(monkeypatch):
    """A LocalFileHost, stopped after the test; NO_PROXY keeps requests to it away from any proxy."""
    for variable in ("NO_PROXY", "no_proxy"):  # requests reads the lower-case one first
        monkeypatch.setenv(variable, "127.0.0.1,localhost")
    host = LocalFileHost()
    yield host
    host.stop()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)
