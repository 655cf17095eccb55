"""Export SAM's prompt side (prompt encoder + mask decoder) to ONNX, for onnxruntime or onnxruntime-web.

    from sam_from_scratch import from_pretrained
    from sam_from_scratch.onnx_export import export_onnx
    export_onnx(from_pretrained("tiny"), "sam_tiny_decoder.onnx")

The graph is `utils.onnx.SamOnnxModel`, with the official input and output names, so a client written for the
official export (e.g. Meta's browser demo) can load it. Needs the `onnx` extra: pip install "sam-from-scratch[onnx]".
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import SamInputError, check_switch, expand_user, input_error, is_int, nearest_existing
from .modeling.sam import Sam
from .utils.checks import check_path
from .utils.onnx import SamOnnxModel

INPUT_NAMES = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input", "orig_im_size"]
OUTPUT_NAMES = ["masks", "iou_predictions", "low_res_masks"]
DEFAULT_OPSET = 18  # the oldest opset torch's exporter writes natively; onnxruntime-web runs it
# The newest opset torch's exporter converts its graph to: it calls onnxscript's version converter, which takes
# 18 to 25 (onnxscript 0.7); for a newer one it logs onnx's failure and leaves the graph at opset 18.
MAX_OPSET = 25
MAX_POINTS = 1024  # the exporter wants a bound on the point dimension; any realistic prompt is far below
OLDEST_TORCH = (2, 8)  # torch 2.7's exporter cannot trace the crop of the masks to the image's size


def torch_version() -> tuple[int, int]:
    """(major, minor) of the torch running, e.g. (2, 14) for '2.14.1+cu130'."""
    major, minor = re.match(r"(\d+)\.(\d+)", torch.__version__).groups()
    return int(major), int(minor)


def example_inputs(model: Sam, num_points: int = 3) -> tuple[torch.Tensor, ...]:
    """Inputs of the right shapes for `model` (random embedding, points spread over the image)."""
    encoder = model.prompt_encoder
    h, w = encoder.image_embedding_size
    size = model.image_encoder.img_size
    generator = torch.Generator().manual_seed(0)
    inputs = (
        torch.randn(1, encoder.embed_dim, h, w, generator=generator),
        torch.rand(1, num_points, 2, generator=generator) * size,
        torch.tensor([[1.0] * (num_points - 1) + [-1.0]]),  # clicks, then the padding point
        torch.zeros(1, 1, *encoder.mask_input_size),
        torch.zeros(1),
        torch.tensor([float(size), float(size)]),
    )
    return tuple(x.to(encoder.no_mask_embed.weight.device) for x in inputs)


def export_onnx(
    model: Sam,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    quantize: bool = False,
    return_single_mask: bool = True,
    use_stability_score: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write `model`'s prompt encoder and mask decoder to the ONNX file `path`; returns the path.

    The image embedding is an input (compute it once per image with `SamPredictor.set_image`, then
    `get_image_embedding()`); the number of points is dynamic. Inputs and outputs: see utils/onnx.py.

    Args:
        model: a Sam in float32 (plain or sped up, e.g. from_pretrained("tiny") or the registry's vit_b).
        opset: ONNX opset version, from 18 to 25 (MAX_OPSET, the newest torch's exporter converts to).
        quantize: write int8 weights (onnxruntime's dynamic quantization, see quantize_onnx): a smaller file,
            with masks close to, not equal to, the float32 file's.
        return_single_mask: one mask per prompt, picked in the graph by the number of points: the best-rated
            of the three multimask outputs for one click or a box alone, the single-mask output otherwise (else
            all four outputs).
        use_stability_score: scores are stability scores instead of predicted IoUs.
        overwrite: replace a file already at `path`; without it, an existing file is kept and nothing is written.
    """
    if not isinstance(model, Sam):
        raise SamInputError(f"model: expected a Sam (e.g. from_pretrained('tiny')), got {type(model).__name__}.")
    others = sorted({str(t.dtype) for t in (*model.prompt_encoder.parameters(), *model.mask_decoder.parameters())
                     if t.dtype != torch.float32})
    if others:  # one part in bfloat16 is enough for a file onnxruntime refuses to load
        raise SamInputError(f"model: expected float32 weights for the export, got {', '.join(others)} in the prompt "
                            "encoder or mask decoder; call model.float() first.")
    for name, value in (("quantize", quantize), ("return_single_mask", return_single_mask),
                        ("use_stability_score", use_stability_score), ("overwrite", overwrite)):
        check_switch(name, value)
    if not is_int(opset) or not DEFAULT_OPSET <= opset <= MAX_OPSET:
        raise input_error("opset", f"an integer from {DEFAULT_OPSET} to {MAX_OPSET}", opset)
    path = _output_path(path, overwrite, "export_onnx(model, path, overwrite=True)")
    if torch_version() < OLDEST_TORCH:  # older exporters stop on the crop to the image's size, deep in a trace
        raise ImportError(f"export_onnx needs torch {'.'.join(map(str, OLDEST_TORCH))} or newer, got torch "
                          f"{torch.__version__}: pip install 'sam-from-scratch[onnx]' brings one", name="torch")
    for package in ("onnx", "onnxscript", "onnxruntime") if quantize else ("onnx", "onnxscript"):
        if importlib.util.find_spec(package) is None:  # torch's exporter would fail deep inside, later
            raise ImportError(f"export_onnx needs {package}: pip install 'sam-from-scratch[onnx]'", name=package)
    wrapper = SamOnnxModel(model, return_single_mask=bool(return_single_mask),
                           use_stability_score=bool(use_stability_score))
    modes = {module: module.training for module in model.modules()}  # the caller's, given back afterwards
    wrapper.eval()
    try:
        if not quantize:
            with _written_atomically(path) as partial:
                _export(wrapper, model, partial, int(opset))
            return path
        _partial_beside(path).unlink()  # the folder can be written to: said now, not after the export
        with tempfile.TemporaryDirectory() as tmp:
            float_path = Path(tmp) / "float32.onnx"
            _export(wrapper, model, float_path, int(opset))
            return quantize_onnx(float_path, path, overwrite=overwrite)
    finally:
        for module, training in modes.items():
            module.training = training


def quantize_onnx(source: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write an int8 copy of the float32 ONNX file `source` to `path` (onnxruntime's dynamic quantization).

    The weights of the matrix products and convolutions are stored as 8-bit integers with one scale each, and
    activations are quantized on the fly. Weights applied through Einsum (the cross-attentions of the fast
    decoder, the default) stay float32, as do biases and norms, and the graph's description does not shrink:
    vit_b's file is about 3x smaller (16.7 -> 5.7 MB; 3.5x built with fast=False), the small model's under 2x.
    Masks are close to, not equal to, the float32 ones. A file already at `path` is only replaced with
    ``overwrite=True``, and never when it is `source` itself.
    """
    check_switch("overwrite", overwrite)
    source = _onnx_source(source)
    path = _output_path(path, overwrite, "quantize_onnx(source, path, overwrite=True)")
    if path.exists() and path.resolve() == source.resolve():
        raise SamInputError(f"path: expected another file than source, got {str(path)!r}, which is source. "
                            "Nothing was saved: the int8 copy goes beside the float32 file, e.g. 'sam_int8.onnx'.")
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _written_atomically(path) as partial, tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shapes inferred, as onnxruntime advises; no graph optimization, which would fold the positional codes
        # of the embedding grid into a float32 constant (4 MB for vit_b) that the graph otherwise computes.
        quant_pre_process(source, prepared, skip_optimization=True)
        quantize_dynamic(prepared, partial, weight_type=QuantType.QUInt8)
    return path


def _partial_beside(path: Path) -> Path:
    """A new empty file beside `path`, to be written and then renamed to `path`; a SamInputError naming `path`
    when its folder cannot be written to (said before any work, as os.access would not for root)."""
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}-{secrets.token_hex(4)}.onnx")
    try:
        partial.open("xb").close()
    except OSError as error:
        raise SamInputError(f"path: expected a file name in a folder you can write to, got {str(path)!r}: "
                            f"{error.strerror or error}. Nothing was saved.") from None
    return partial


@contextlib.contextmanager
def _written_atomically(path: Path):
    """A file beside `path` to write to (_partial_beside), renamed to `path` when the block ends well and removed
    when it fails: a full disk or an interruption never leaves a broken file at `path` (nor one that only
    overwrite=True or --force would replace)."""
    partial = _partial_beside(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _output_path(path, overwrite: bool, how_to_overwrite: str) -> Path:
    """`path` as a Path to write the ONNX file to: a file name in an existing folder, not in use unless
    `overwrite` (`how_to_overwrite` is the call that says so, for the message)."""
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise SamInputError(f"path: expected a file name for the ONNX model (e.g. 'sam.onnx'), got {path!r:.60}.")
    path = expand_user("path", path, "a file name for the ONNX model")
    if path.is_dir():
        raise SamInputError(f"path: expected a file name for the ONNX model, got {path}, which is a folder.")
    if not path.parent.is_dir():
        folder = nearest_existing(path.parent)
        if folder.is_dir():
            raise SamInputError(f"path: the folder {path.parent} does not exist.")
        which = "is a file" if folder == path.parent else f"cannot be a folder: {folder} is a file"
        raise SamInputError(f"path: expected a file name in a folder, got {str(path)!r}, but {path.parent} {which}.")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise SamInputError(
            f"path: expected a file name not in use, got {str(path)!r}, but {path.name} already exists there. "
            f"Nothing was saved: choose another name, or call {how_to_overwrite} to overwrite."
        )
    if path.suffix.lower() != ".onnx":  # a file of another kind with an ONNX model inside would mislead its reader
        raise SamInputError(f"path: expected a file name ending in .onnx, got {str(path)!r}.")
    return path


def _onnx_source(source) -> Path:
    """`source` as a Path to an ONNX model that onnx can read (the file quantize_onnx starts from)."""
    expected = "an ONNX file written by export_onnx"
    check_path("source", source, expected)
    import onnx
    from google.protobuf.message import DecodeError

    source = expand_user("source", source, expected)
    if not source.is_file():
        why = "is a folder" if source.is_dir() else "does not exist"
        raise SamInputError(f"source: expected {expected}, got {str(source)!r}, which {why}.")
    try:
        graph = onnx.load(source, load_external_data=False).graph
    except DecodeError as error:
        raise SamInputError(f"source: expected {expected}, got {str(source)!r}, which onnx cannot read "
                            f"as a model ({error}).") from None
    if not graph.node:  # an empty file (or text, for instance) reads as a model without a graph
        raise SamInputError(f"source: expected {expected}, got {str(source)!r}, which holds no ONNX graph.")
    return source


def _export(wrapper: nn.Module, model: Sam, path: Path, opset: int) -> None:
    # torch's default exporter (dynamo=True) traces with torch.export, which refuses to guess a size computed
    # from an input's values: the official SamOnnxModel fails there (GuardOnDataDependentSymNode) because it
    # turns orig_im_size into Python ints. Ours reads those sizes with .item() and bounds them (utils/onnx.py).
    points = torch.export.Dim("num_points", min=1, max=MAX_POINTS)
    with warnings.catch_warnings():  # the one Dim shared by coordinates and labels is reported as a rename
        warnings.filterwarnings("ignore", message=".*num_points will not be used")
        program = torch.onnx.export(
            wrapper,
            example_inputs(model),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_shapes=(None, {1: points}, {1: points}, None, None, None),
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file, as a browser fetches it
            verbose=False,
        )
    written = program.model.opset_imports.get("")
    if written != opset:  # torch's exporter logs a failed conversion and goes on with the opset it began with
        raise RuntimeError(f"opset: torch's exporter wrote opset {written}, not {opset}; nothing was saved. "
                           f"Pass an opset it converts to ({DEFAULT_OPSET} works).")
    masks = program.model.graph.outputs[0]  # its last two sizes are read from orig_im_size: name them for users
    masks.shape = type(masks.shape)([*masks.shape[:2], "height", "width"])
    program.save(path)
