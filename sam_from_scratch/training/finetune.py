"""Fine-tuning a trained SAM (vit_b, vit_l, vit_h or the small model) on your own images and masks.

The recipe is notebook 11's (`batch_loss`): prompts sampled from the masks (a point or a jittered box), a
corrective click where the prediction is wrong, the previous logits fed back, focal + dice + IoU loss. What
differs is what trains:

- the mask decoder, and optionally the prompt encoder; the image encoder stays frozen, so every image's
  embedding is computed once, cached on disk in the run folder (an image file changed since is embedded
  again), and every step costs only the decoder;
- or, with `lora_rank` > 0, also low-rank adapters on the encoder's attention (qkv): W x + B A x with A
  (r, C) and B (3C, r), B starting at zero. The embeddings then change at every step, so nothing is cached.

A run folder holds run.json (the settings: it marks the folder as ours), state.pt (resumable state), the loss
log, the embedding cache, and at the end the checkpoint in the official format and card.json (the data, the
settings, held-out mIoU before and after). Calling `finetune` again with the same settings continues the run
(paths count as the same however they are written; a run whose data gained or lost images or masks since it began
is refused: split anew, a held-out image might already have trained). Under `torchrun` every process takes an
equal share of each step's images and DistributedDataParallel averages their gradients; the prompts of an image
depend on the image and the step only, so any number of processes trains the same weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..device import auto_device
from ..errors import (SamInputError, check_int, check_number, check_switch, expand_user, input_error, is_number,
                      renamed)
from ..modeling.sam import Sam
from ..utils.checks import check_path
from ..utils.transforms import ResizeLongestSide
from .datasets import ImageRecord, InstanceDataset, check_val_fraction, load_dataset, read_masks, read_rgb
from .forward import decode, encode_images
from .loop import FIGURES, TrainConfig, _jsonable, _LossLog, batch_loss, lr_factor, make_optimizer, optimizer_step, write_atomically
from .losses import mask_iou
from .prompts import random_points_in, seeded_generator

RUN_FILE, STATE_FILE, CARD_FILE, LOG_FILE, CACHE_DIR = "run.json", "state.pt", "card.json", "loss_log.csv", "embeddings"
OUR_FILES = {RUN_FILE, STATE_FILE, CARD_FILE, LOG_FILE, CACHE_DIR}
MODEL_NAMES = ("tiny", "vit_b", "vit_l", "vit_h")


# ---------------------------------------------------------------------------------------------------------
# Low-rank adapters
# ---------------------------------------------------------------------------------------------------------
class LoRALinear(nn.Linear):
    """A frozen linear layer plus a trainable low-rank update: y = W x + b + B (A x). Same `weight` and `bias`
    names as nn.Linear, so the official keys stay; `merged_weight` folds the update in for saving."""

    def add_adapter(self, rank: int) -> None:
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=self.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=self.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own start; B = 0: no change yet

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + F.linear(F.linear(x, self.lora_A), self.lora_B)

    def merged_weight(self) -> torch.Tensor:
        return self.weight + self.lora_B @ self.lora_A  # (out, in)


def add_lora(model: Sam, rank: int) -> list[nn.Parameter]:
    """Give every attention block of the image encoder a rank-`rank` adapter on qkv; returns its parameters."""
    params = []
    for block in model.image_encoder.blocks:
        qkv = block.attn.qkv
        qkv.__class__ = LoRALinear  # a subclass: the module keeps its frozen weight and bias
        qkv.add_adapter(rank)
        params += [qkv.lora_A, qkv.lora_B]
    return params


def official_state_dict(model: Sam) -> dict[str, torch.Tensor]:
    """The model's weights under the official keys, on the CPU, with any adapter folded into its qkv weight."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if ".lora_" not in k}
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            state[f"{name}.weight"] = module.merged_weight().detach().cpu()
    return state


# ---------------------------------------------------------------------------------------------------------
# Images in the model's frame, and their embeddings
# ---------------------------------------------------------------------------------------------------------
def frame_image(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 with its longest side `size`, resized as the predictor does."""
    return torch.from_numpy(np.ascontiguousarray(ResizeLongestSide(size).apply_image(image)))


def frame_masks(masks: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) bool -> (N, size, size) bool: resized like the image, then padded bottom-right like the model
    pads it. A mask too thin to keep a pixel above half coverage keeps every pixel it touches."""
    h, w = ResizeLongestSide.get_preprocess_shape(*masks.shape[1:], size)
    cover = F.interpolate(torch.from_numpy(masks)[:, None].float(), (h, w), mode="bilinear", antialias=True)[:, 0]
    lost = ~(cover > 0.5).flatten(1).any(1)
    targets = torch.where(lost[:, None, None], cover > 0, cover > 0.5)
    return F.pad(targets, (0, size - w, 0, size - h))


class _Embedded(nn.Identity):
    """In the image encoder's place: the 'images' it gets are already their embeddings."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size


class _EmbeddedSam(nn.Module):
    """What `batch_loss` sees while fine-tuning: the model's prompt encoder and mask decoder, and embeddings
    passed in as the images (B, h, w, C), channels last like images; `encode_images` hands them through."""

    def __init__(self, sam: Sam) -> None:
        super().__init__()
        self.prompt_encoder, self.mask_decoder = sam.prompt_encoder, sam.mask_decoder
        self.image_encoder = _Embedded(sam.image_encoder.img_size)
        self.pixel_mean = sam.pixel_mean  # where encode_images puts its input

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x


class EmbeddingCache:
    """Each image's embedding (1, C, h, w): from the encoder every time (`folder` None: the adapters train), or
    computed once and kept in `folder`, one file per image (the encoder is frozen).

    A file is named by the image's id and path and by its size and modification time, as they were when the
    run first asked for it: an image edited since an earlier run is embedded again, not read from the cache.
    The name also says how the image is read (upright by its EXIF orientation: READING), so embeddings kept by
    an earlier way of reading are not reused."""

    READING = "upright"

    def __init__(self, sam: Sam, folder: Path | None) -> None:
        self.sam, self.folder = sam, folder
        self._paths: dict[tuple[str, Path], Path] = {}

    def path(self, record: ImageRecord) -> Path:
        known = (record.image_id, record.path)
        if known not in self._paths:
            stat = record.path.stat()
            text = f"{record.image_id}|{record.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.READING}"
            self._paths[known] = self.folder / f"{hashlib.sha1(text.encode()).hexdigest()[:20]}.pt"
        return self._paths[known]

    def compute(self, record: ImageRecord) -> torch.Tensor:
        image = frame_image(read_rgb(record.path), self.sam.image_encoder.img_size)
        return encode_images(self.sam, image[None])  # with gradients where adapters train

    def fill(self, records: list[ImageRecord], progress: bool = False) -> None:
        from tqdm.auto import tqdm

        missing = [r for r in records if not self.path(r).exists()]
        self.folder.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            for record in tqdm(missing, desc="embedding images", disable=not progress):
                embedding = self.compute(record).cpu()
                write_atomically(self.path(record), lambda tmp: torch.save(embedding, tmp))

    def __call__(self, record: ImageRecord) -> torch.Tensor:
        if self.folder is None:
            return self.compute(record)
        return torch.load(self.path(record), map_location=self.sam.pixel_mean.device, weights_only=True)


# ---------------------------------------------------------------------------------------------------------
# One step, and the held-out figure
# ---------------------------------------------------------------------------------------------------------
def image_at(position: int, num_images: int, seed: int) -> int:
    """The training image at `position` of the stream: epoch after epoch, each a fresh permutation."""
    epoch, offset = divmod(position, num_images)
    return int(np.random.default_rng([seed, epoch]).permutation(num_images)[offset])


def image_prompts(masks: torch.Tensor, cfg: TrainConfig, step: int, position: int):
    """What one image brings to a step: cfg.prompts_per_image of its instances (P, S, S), which of them start
    from a box (P,), and the generator of their clicks. All drawn from a stream of the image's own (seed,
    step, position), so that no image's prompts depend on how the batch is split between processes."""
    rng = np.random.default_rng([cfg.seed, step, position])
    n, K = len(masks), cfg.prompts_per_image
    targets = masks[torch.from_numpy(rng.choice(n, size=K, replace=n < K))]
    is_box = torch.from_numpy(rng.random(K) < cfg.box_fraction)
    return targets, is_box, torch.Generator().manual_seed(int(rng.integers(2**62)))


class _FinetuneStep(nn.Module):
    """The loss of one worker's share of a step, as a module: DistributedDataParallel hooks into its forward."""

    def __init__(self, sam: Sam, data: InstanceDataset, embed: EmbeddingCache, cfg: TrainConfig, own: int,
                 replay_fraction: float | None, teacher: Sam | None = None, distill: float = 0.0) -> None:
        """data: the training images, your own (the first `own`) then the replayed ones; teacher: the model
        as it started, whose answers on the replayed images the loss keeps with weight `distill`."""
        super().__init__()
        self.sam, self.data, self.embed, self.cfg = sam, data, embed, cfg
        self.own, self.replay_fraction = own, replay_fraction
        self.teacher, self.distill = teacher, distill
        self._replayed = {id(record) for record in data.records[own:]}

    def record_at(self, position: int) -> ImageRecord:
        """The training image at `position` of the stream (see image_at); with a replay_fraction, a replayed
        image drawn at random that often, else the next of your own."""
        records, own, seed = self.data.records, self.own, self.cfg.seed
        if self.replay_fraction is None or own == len(records):
            return records[image_at(position, len(records), seed)]
        rng = np.random.default_rng([seed, position, 1])
        if rng.random() < self.replay_fraction:
            return records[own + int(rng.integers(len(records) - own))]
        return records[image_at(position, own, seed)]

    def forward(self, step: int, rank: int, world: int) -> dict:
        """`batch_loss` of this worker's images, all in one batch, each with its own prompt generator."""
        share = self.cfg.images_per_step // world
        first = step * self.cfg.images_per_step + rank * share
        embeddings, targets, is_box, generators, replayed = [], [], [], [], []
        for position in range(first, first + share):
            record = self.record_at(position)
            replayed.append(id(record) in self._replayed)
            masks = frame_masks(read_masks(record), self.sam.image_encoder.img_size)
            image_targets, image_is_box, generator = image_prompts(masks, self.cfg, step, position)
            embeddings.append(self.embed(record))
            targets.append(image_targets)
            is_box.append(image_is_box)
            generators.append(generator)
        K = self.cfg.prompts_per_image
        image_index = torch.arange(share).repeat_interleave(K)  # (share * K,) the image of each prompt
        batch = (torch.cat(embeddings).permute(0, 2, 3, 1), torch.cat(targets), image_index, torch.cat(is_box))
        distill = None
        if self.teacher is not None and self.distill and any(replayed):
            distill = (_EmbeddedSam(self.teacher), torch.tensor(replayed), self.distill)
        return batch_loss(_EmbeddedSam(self.sam), batch, self.cfg, generators, distill)  # embeddings (share, h, w, C)


@torch.no_grad()
def heldout_miou(sam: Sam, data: InstanceDataset, embed: EmbeddingCache, seed: int = 0, progress: bool = False) -> float:
    """mIoU over every held-out instance from one random click inside it, keeping the mask the model rates
    best (predicted IoU), measured at the image's own size."""
    from tqdm.auto import tqdm

    sam.eval()
    S, transform, ious = sam.image_encoder.img_size, ResizeLongestSide(sam.image_encoder.img_size), []
    for index, record in enumerate(tqdm(data.records, desc="held-out mIoU", disable=not progress)):
        truth = torch.from_numpy(read_masks(record))  # (N, H, W)
        size = tuple(truth.shape[1:])
        clicks = random_points_in(truth, seeded_generator(seed * 1_000_003 + index))[:, None]
        coords = transform.apply_coords_torch(clicks + 0.5, size) - 0.5  # each clicked pixel's centre, resized
        n = len(truth)
        logits, predicted = decode(sam, embed(record), torch.zeros(n, dtype=torch.long), coords, torch.ones(n, 1), None, None, True)
        masks = sam.postprocess_masks(logits, transform.get_preprocess_shape(*size, S), size).cpu()
        ious.append(mask_iou(masks, truth[:, None].float()).gather(1, predicted.cpu().argmax(1)[:, None])[:, 0])
    return round(float(torch.cat(ious).mean()), 4)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FinetuneSettings:
    """Everything that decides the weights a run ends with (what run.json records)."""

    model: str
    checkpoint: str | None
    data: str
    images: str | None
    steps: int
    lr: float
    batch: int
    seed: int
    val_fraction: float
    val_ids: list | None
    lora_rank: int
    train_prompt_encoder: bool
    prompts_per_image: int
    clicks: int
    replay: str | None = None
    replay_images: str | None = None
    replay_fraction: float | None = None
    distill: float = 0.0


def finetune(
    model: str | Sam = "vit_b",
    data: str | os.PathLike = "",
    images: str | os.PathLike | None = None,
    out: str | os.PathLike = "runs/finetune",
    *,
    checkpoint: str | os.PathLike | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    lr: float = 1e-4,
    batch: int = 4,
    device: str | torch.device = "auto",
    seed: int = 0,
    val_fraction: float = 0.1,
    val_ids: list | None = None,
    lora_rank: int = 0,
    train_prompt_encoder: bool = False,
    prompts_per_image: int = 4,
    clicks: int = 2,
    replay: str | os.PathLike | None = None,
    replay_images: str | os.PathLike | None = None,
    replay_fraction: float | None = None,
    distill: float = 0.0,
    progress: bool = True,
    cache_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
) -> dict:
    """Fine-tune SAM on `data` and write the run folder `out`; returns the card (a dict, as card.json holds it).

    Args:
        model: "tiny", "vit_b", "vit_l", "vit_h", a checkpoint path, or a Sam already built. A Sam given is the
            model that trains, in place: it ends fine-tuned, on `device` and in eval mode, only the trained parts
            requiring gradients, and with `lora_rank` its encoder's qkv layers carry the adapters. Pass
            copy.deepcopy(model) to keep the model as it was.
        data, images: a COCO instance JSON and its image folder, or a folder with images/ and masks/.
        checkpoint: weights for the `model` variant (default: the bundled or official ones).
        steps / epochs: optimizer steps, or passes over the training images (default 10 epochs).
        lr: the learning rate, > 0. A run whose loss (or weights) becomes NaN or infinite stops with an error
            naming the step, keeping the state saved before it and writing no checkpoint or card.
        batch: images per step (split between the processes under torchrun), each with `prompts_per_image`
            prompts followed by `clicks` - 1 corrective clicks.
        val_fraction / val_ids: the held-out images, drawn with `seed`, or given as ids or file names (a value
            names the image of that id; if none has it, of that file name, then that name without its suffix);
            one of them: val_ids beside a val_fraction other than the default is refused.
        lora_rank: > 0 adds adapters of that rank to the image encoder's qkv (no embedding cache then).
        train_prompt_encoder: train the prompt encoder as well as the mask decoder.
        replay, replay_images: a second dataset (same formats) whose images all join the training images,
            none held out: images of the kind the model already knows, so that it keeps knowing them. An image
            held out from `data` (the same file) never trains: it is left out of the replay set, and the card's
            data.replay_heldout_excluded counts those left out.
        replay_fraction: the share of each step's images drawn from `replay` (default: its share of all the
            training images); a large replay set then reminds the model of much, at the share you choose.
        distill: > 0 also pulls, on the replayed images, the model's answers towards those of the model it
            started from (the same prompts, its mask logits as soft targets with this weight, its IoU
            predictions by squared error): it keeps what it did on them, not only their ground truth.
        cache_dir, mirror: where an official model's checkpoint is kept, and where it is downloaded from when it
            is not there yet (as for from_pretrained); neither changes the weights a run ends with.
    """
    # the arguments first, each on its own; those checked against the data (val_ids) or the model's name are
    # checked when these are read, still before anything is written
    _check_model(model, checkpoint)
    check_path("out", out, "the run folder (a path)")
    check_path("checkpoint", checkpoint, "a checkpoint file (a path) or None", optional=True)
    _check_steps(steps, epochs)
    if not (is_number(lr) and 0 < lr < math.inf):
        raise input_error("lr", "a finite number > 0", lr)
    check_int("batch", batch, 1)
    check_int("seed", seed, 0)
    check_val_fraction(val_fraction)
    if val_ids is not None and val_fraction != 0.1:  # the default: with val_ids it would be recorded, not used
        raise SamInputError(f"val_fraction, val_ids: expected one of them, got both (val_fraction={val_fraction!r} "
                            "and val_ids).")
    check_int("lora_rank", lora_rank, 0)
    check_switch("train_prompt_encoder", train_prompt_encoder)
    check_int("prompts_per_image", prompts_per_image, 1)
    check_int("clicks", clicks, 1)
    for argument, value in (("replay_images", replay_images), ("replay_fraction", replay_fraction)):
        if replay is None and value is not None:
            raise SamInputError(f"{argument}: expected None without a replay dataset, got {value!r}.")
    if replay_fraction is not None:
        check_number("replay_fraction", replay_fraction, 0.0, 1.0, high_open=True)
        if replay_fraction == 0:
            raise SamInputError("replay_fraction: expected a share in (0, 1), got 0, which would draw no replayed "
                                "image at all; leave replay out to train without it.")
    check_number("distill", distill, 0.0)
    if distill and replay is None:
        raise SamInputError(f"distill: expected 0 without a replay dataset, got {distill!r}.")
    check_switch("progress", progress)
    # a leading ~ read as a shell reads it (the command line's paths are expanded too)
    data, images, out, checkpoint, replay, replay_images = (
        expand_user(name, p, "a path") if isinstance(p, (str, os.PathLike)) and str(p).startswith("~") else p
        for name, p in zip(PATH_ARGUMENTS, (data, images, out, checkpoint, replay, replay_images)))

    dataset = load_dataset(data, images)
    train_set, val_set = dataset.split(val_fraction, seed, val_ids)
    replayed_sets = []
    if replay is not None:
        try:
            replayed = load_dataset(replay, replay_images)
        except SamInputError as error:  # its messages name data and images: here they are replay's
            raise renamed(error, {"data": "replay", "images": "replay_images"}) from None
        train_set, replayed_sets = _with_replay(train_set, val_set, replayed), [replayed]
    steps = _steps(steps, epochs, len(train_set), batch)
    rank, world, owns_group = _join_workers(device)
    left_out = train_set.source.get("replay_heldout_excluded")
    if left_out and progress and rank == 0:
        print(f"replay: left out {left_out} of its images that are held out for validation")
    if batch % world:
        raise SamInputError(f"batch: expected a multiple of the {world} processes, got {batch}.")
    target = _worker_device(device, world)
    sam, name = _load_model(model, checkpoint, cache_dir, mirror)
    # plain Python numbers (numpy's would not go into run.json), so that a run with the same settings resumes
    # paths written out in full, so that the same data named another way (from another folder, with a trailing
    # slash) is the same run
    settings = FinetuneSettings(name, _full_path(checkpoint), _full_path(data), _full_path(images), int(steps),
                                float(lr), int(batch), int(seed), float(val_fraction),
                                None if val_ids is None else [str(v) for v in val_ids], int(lora_rank),
                                bool(train_prompt_encoder), int(prompts_per_image), int(clicks),
                                _full_path(replay), _full_path(replay_images),
                                None if replay_fraction is None else float(replay_fraction), float(distill))
    out = Path(out)
    try:
        _claim_run_folder(out, settings, data_fingerprint(dataset, *replayed_sets), lead=rank == 0, world=world)
        return _run(sam.to(target), settings, dataset, train_set, val_set, out, rank, world, progress)
    finally:
        if owns_group:
            dist.destroy_process_group()


def _with_replay(train_set: InstanceDataset, val_set: InstanceDataset, replayed: InstanceDataset) -> InstanceDataset:
    """The training images followed by the replayed ones, less any held-out image (the same file): a held-out
    image never trains. Its source counts those left out, for the card."""
    held_out = {record.path.resolve() for record in val_set.records}
    kept = [record for record in replayed.records if record.path.resolve() not in held_out]
    if not kept:
        raise SamInputError(f"replay: expected images besides the held-out ones, got {replayed.source['path']}, "
                            f"whose {len(replayed)} images are all held out for validation.")
    left_out = len(replayed) - len(kept)
    return InstanceDataset(train_set.records + kept, {**train_set.source, "replay_heldout_excluded": left_out})


def _check_steps(steps, epochs) -> None:
    if steps is not None and epochs is not None:
        raise SamInputError(f"steps, epochs: expected one of them, got both (steps={steps}, epochs={epochs}).")
    if steps is not None:
        check_int("steps", steps, 1)
    if epochs is not None and not (is_number(epochs) and 0 < epochs < math.inf):
        raise input_error("epochs", "a finite number > 0", epochs)


def _steps(steps, epochs, num_train: int, batch: int) -> int:
    """`steps`, or as many as `epochs` passes over the training images take (default 10 passes)."""
    if steps is not None:
        return steps
    epochs = 10 if epochs is None else epochs
    return max(1, math.ceil(epochs * num_train / batch))


def _join_workers(device) -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group): torchrun's environment, or one process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, False
    dist.init_process_group("nccl" if auto_device(device).type == "cuda" else "gloo")
    return dist.get_rank(), world, True


def _worker_device(device, world: int) -> torch.device:
    target = auto_device(device)
    if target.type == "cuda" and world > 1 and target.index is None:
        target = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return target


def _check_model(model, checkpoint) -> None:
    if isinstance(model, Sam):
        if checkpoint is not None:
            raise SamInputError("checkpoint: expected None when model is a Sam already built, got a checkpoint too.")
    elif not isinstance(model, (str, os.PathLike)):
        raise SamInputError(f"model: expected {', '.join(MODEL_NAMES)}, a checkpoint path or a Sam, got {type(model).__name__}.")
    elif checkpoint is not None and model not in MODEL_NAMES:
        raise SamInputError(f"model: expected a variant ({', '.join(MODEL_NAMES)}) for the weights of --checkpoint, got {model!r}.")


def _load_model(model, checkpoint, cache_dir=None, mirror=None) -> tuple[Sam, str]:
    from ..build import from_pretrained, sam_model_registry

    if isinstance(model, Sam):
        return model, config_name_of(model)
    if checkpoint is not None:
        return sam_model_registry[model](checkpoint=checkpoint), str(model)
    try:
        return from_pretrained(str(model), device="cpu", cache_dir=cache_dir, mirror=mirror), str(model)
    except SamInputError as error:  # its messages name its own argument, name: here it is model
        raise renamed(error, {"name": "model"}) from None


def config_name_of(sam: Sam) -> str:
    """The variant `sam` is, from its shapes ("vit_b", ..., "tiny"), or "custom"."""
    from ..config import guess_variant

    return guess_variant(sam.state_dict()) or "custom"


PATH_SETTINGS = ("checkpoint", "data", "images", "replay", "replay_images")
PATH_ARGUMENTS = ("data", "images", "out", "checkpoint", "replay", "replay_images")


def _full_path(path) -> str | None:
    """A path as run.json records it: absolute and normalised (no "..", no trailing slash); None stays None."""
    return None if path is None else os.path.abspath(os.path.expanduser(path))


def data_fingerprint(*datasets: InstanceDataset) -> str:
    """Which files the run's images and masks are, in a few hex digits: their full paths (a COCO file's too). A
    run resumed on images added or removed since would split them anew, and a held-out image might already have
    trained. (A file edited in place keeps its path: its embedding is computed again, see EmbeddingCache.)"""
    files = {Path(d.source["path"]) for d in datasets if Path(d.source["path"]).is_file()}  # a COCO JSON
    for record in (record for d in datasets for record in d.records):
        files.add(record.path)
        kind, source = record.masks
        files.update([source] if kind == "labels" else source if kind == "pngs" else [])
    digest = hashlib.sha256()
    for file in sorted(os.path.abspath(f) for f in files):
        digest.update(f"{file}\n".encode())
    return digest.hexdigest()[:16]


def _claim_run_folder(out: Path, settings: FinetuneSettings, fingerprint: str, lead: bool, world: int) -> None:
    """Refuse a folder holding files of anyone else's, or another run's, or this run's on data that changed
    since; mark a new one as ours."""
    if out.exists() and not out.is_dir():
        raise SamInputError(f"out: expected a folder for the run, got {out}, which is a file.")
    run_file = out / RUN_FILE
    fresh = not run_file.exists()
    if not fresh:
        record = _run_record(run_file)
        # runs recorded before paths were written out in full: relative to the folder the command runs in
        recorded = {k: _full_path(v) if k in PATH_SETTINGS else v for k, v in record["settings"].items()}
        if recorded != _jsonable(asdict(settings)):
            changed = sorted(k for k, v in _jsonable(asdict(settings)).items() if recorded.get(k) != v)
            raise SamInputError(f"out: expected a new folder or a run with the same settings, got {out}, a run with "
                                f"other {', '.join(changed)}; choose another --out to start a new run.")
        before = record.get("data_fingerprint")  # None in runs recorded before it was kept
        if before is not None and before != fingerprint:
            raise SamInputError(f"out: expected the run's data as it was, got {out}, a run whose images or masks "
                                "have been added or removed since it began: resumed, it would split them anew; "
                                "choose another --out to start a new run.")
    else:
        foreign = sorted(p.name for p in out.iterdir()) if out.exists() else []
        if foreign:
            raise SamInputError(f"out: expected an empty folder or a fine-tuning run folder, got {out}, which holds "
                                f"{foreign[:5]}; fine-tuning never overwrites files it did not create.")
    if world > 1:  # every process has looked at the folder before the lead writes in it (else one may see run.json
        dist.barrier()  # half made, or made before it looked for one, and take it for someone else's file)
    if lead and fresh:
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"settings": asdict(settings), "data_fingerprint": fingerprint}, indent=2) + "\n"
        write_atomically(run_file, lambda tmp: tmp.write_text(text))
    if world > 1:
        dist.barrier()


def _run_record(run_file: Path) -> dict:
    """What a run.json of ours records (its "settings", and the data's fingerprint); a file of that name that
    finetune did not write is refused."""
    try:
        recorded = json.loads(run_file.read_text())
    except (OSError, ValueError) as error:  # a folder, or not JSON text
        recorded, why = None, f"not readable as JSON: {error}"
    else:
        why = f"a JSON {type(recorded).__name__} without the settings finetune records"
    if not (isinstance(recorded, dict) and isinstance(recorded.get("settings"), dict)):
        raise SamInputError(f"out: expected an empty folder or a fine-tuning run folder, got {run_file.parent}, whose "
                            f"{run_file.name} is not one finetune wrote ({why}); fine-tuning never overwrites files "
                            "it did not create.")
    return recorded


def _train_config(settings: FinetuneSettings) -> TrainConfig:
    return replace(TrainConfig(), steps=settings.steps, images_per_step=settings.batch, lr=settings.lr,
                   prompts_per_image=settings.prompts_per_image, clicks=settings.clicks, seed=settings.seed,
                   warmup_steps=max(1, min(30, settings.steps // 10)), save_every=max(1, min(50, settings.steps // 4)))


def _trainable(sam: Sam, settings: FinetuneSettings) -> dict[str, nn.Parameter]:
    sam.requires_grad_(False)
    sam.mask_decoder.requires_grad_(True)
    sam.prompt_encoder.requires_grad_(settings.train_prompt_encoder)
    if settings.lora_rank:
        add_lora(sam, settings.lora_rank)
    return {name: p for name, p in sam.named_parameters() if p.requires_grad}


def _run(sam, settings, dataset, train_set, val_set, out, rank, world, progress) -> dict:
    from tqdm.auto import tqdm

    lead, cfg = rank == 0, _train_config(settings)
    # the model as it starts (before adapters and before a resumed state): what distill keeps
    teacher = copy.deepcopy(sam).eval().requires_grad_(False) if settings.distill else None
    trainable = _trainable(sam, settings)
    embed = EmbeddingCache(sam, None if settings.lora_rank else out / CACHE_DIR)
    if embed.folder is not None:  # every process embeds its share of the images, once for the whole run
        embed.fill((train_set.records + val_set.records)[rank::world], progress=progress and lead)
        if world > 1:
            dist.barrier()
    optimizer = make_optimizer(_Params(trainable), cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    state_path = out / STATE_FILE
    start, elapsed, before = 0, 0.0, None
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        sam.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, elapsed, before = int(state["step"]), float(state["elapsed"]), state["before"]
    if before is None:
        before = heldout_miou(sam, val_set, embed, settings.seed, progress and lead)
    log = _LossLog(out / LOG_FILE, start) if lead else None

    def save_state(step: int) -> None:
        log.write_kept_rows()
        state = {"trainable": {k: p.detach().cpu() for k, p in trainable.items()}, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "step": step, "elapsed": elapsed, "before": before}
        write_atomically(state_path, lambda tmp: torch.save(state, tmp))

    step_loss = _FinetuneStep(sam, train_set, embed, cfg, len(dataset) - len(val_set), settings.replay_fraction,
                              teacher, settings.distill)
    if world > 1:  # a share may hold no box prompt: the box embeddings can go unused on one process only
        step_loss = DistributedDataParallel(step_loss, find_unused_parameters=True)
    sam.train()
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="fine-tune", disable=not (progress and lead))
    t0, saved = time.perf_counter() - elapsed, start  # saved: the step of the state in state.pt
    for step in bar:
        figures = optimizer_step(step_loss(step, rank, world), trainable.values(), optimizer, scheduler, cfg, world)
        elapsed = time.perf_counter() - t0
        saving = (step + 1) % cfg.save_every == 0 or step == cfg.steps - 1
        _stop_if_diverged(float(figures[0]), trainable.values() if saving else (), step, settings.lr, out, saved)
        saved = step + 1 if saving else saved
        if not lead:
            continue
        row = {"step": step, **dict(zip(FIGURES, figures.tolist())), "lr": optimizer.param_groups[0]["lr"], "seconds": round(elapsed, 2)}
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
        if saving:
            save_state(step + 1)
    sam.eval()
    card = _finish(sam, settings, dataset, train_set, val_set, embed, out, before, elapsed, progress) if lead else {}
    if world > 1:
        dist.barrier()
    return card


def _stop_if_diverged(loss: float, params, step: int, lr: float, out: Path, saved: int) -> None:
    """Refuse to go on (and so to save) once the loss, or one of `params`, is NaN or infinite: the run diverged.
    The state saved before (after `saved` steps) stays in `out`; no checkpoint or card is written."""
    if math.isfinite(loss) and all(bool(torch.isfinite(p).all()) for p in params):
        return
    if math.isfinite(loss):
        what = "the weights became NaN or infinite"
    else:
        what = f"the loss became {'NaN' if math.isnan(loss) else 'infinite'}"
    kept = f"{out} keeps its state after {saved} step(s)" if saved else f"no trained state was saved in {out}"
    raise SamInputError(f"lr: {what} at step {step} (lr {lr:g}); try a smaller lr, with another out ({kept}; "
                        "no checkpoint or card was written).")


class _Params(nn.Module):
    """The trainable parameters under their names, for `make_optimizer` (which sorts them by name)."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        super().__init__()
        self.by_name = params

    def named_parameters(self, *args, **kwargs):
        return iter(self.by_name.items())


def _finish(sam, settings, dataset, train_set, val_set, embed, out, before, elapsed, progress) -> dict:
    after = heldout_miou(sam, val_set, embed, settings.seed, progress)
    checkpoint = out / f"sam_{config_name_of(sam)}_finetuned.pth"
    weights = official_state_dict(sam)
    write_atomically(checkpoint, lambda tmp: torch.save(weights, tmp))
    card = {
        "model": settings.model,
        "checkpoint": checkpoint.name,
        "data": {**dataset.source, "train_images": len(dataset) - len(val_set), "heldout_images": len(val_set),
                 "replay_images": len(train_set) - (len(dataset) - len(val_set)),
                 "replay_heldout_excluded": train_set.source.get("replay_heldout_excluded", 0),
                 "heldout_ids": val_set.image_ids},
        "settings": asdict(settings),
        "trained": "mask decoder" + (", prompt encoder" if settings.train_prompt_encoder else "")
                   + (f", rank-{settings.lora_rank} adapters on the image encoder's qkv" if settings.lora_rank else ""),
        "heldout_miou_before": before,
        "heldout_miou_after": after,
        "heldout_instances": int(sum(len(read_masks(r)) for r in val_set.records)),
        "evaluation": "one random click inside each held-out instance; the mask the model rates best (predicted IoU)",
        "steps": settings.steps,
        "training_seconds": round(elapsed, 1),
        "seconds_per_step": round(elapsed / max(1, settings.steps), 4),
        "embedding_cache": settings.lora_rank == 0,
        "torch_version": torch.__version__,
    }
    text = json.dumps(card, indent=2) + "\n"
    write_atomically(out / CARD_FILE, lambda tmp: tmp.write_text(text))
    if progress:
        print(f"held-out mIoU {before:.3f} -> {after:.3f}; wrote {checkpoint} and {out / CARD_FILE}")
    return json.loads(text)

