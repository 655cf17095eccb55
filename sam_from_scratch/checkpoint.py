"""Reading SAM checkpoints safely and loading them into a model, with errors that say what went wrong.

Two layouts are accepted:

* the official files (`sam_vit_b_01ec64.pth`, ...): a plain state dict whose keys are our module names
  (`image_encoder.blocks.0.attn.qkv.weight`, ...);
* the Hugging Face layout (`facebook/sam-vit-base`, ...): a folder written by `SamModel.save_pretrained`
  (`model.safetensors`, possibly sharded, or `pytorch_model.bin`) or its `model.safetensors` file. Its keys
  are renamed to the official ones by `HF_TO_OFFICIAL` below; no tensor needs reshaping.

Nothing in a checkpoint can run code: `.pth`/`.bin` files go through `torch.load(weights_only=True)`, which
only rebuilds tensors and plain containers, and safetensors files hold nothing but tensors.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import guess_variant, signature
from .errors import describe, input_error

StateDict = dict[str, Tensor]


class CheckpointError(ValueError):
    """A checkpoint could not be read, or does not fit the model it is loaded into."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


# ---------------------------------------------------------------------------------------------------------
# Hugging Face names -> official names
# ---------------------------------------------------------------------------------------------------------
# Derived by building transformers' `SamModel(SamConfig())` and the official `sam_model_registry["vit_b"]()`
# and lining up their state dicts (tests/weights/test_hf_parity.py checks the map covers every key of vit_b/l/h).
# Each rule rewrites the start of a key; the first rule that matches wins, and the rest of the key is kept.
# Keys no rule matches are already equal in both layouts (e.g. `mask_decoder.iou_token.weight`,
# `mask_decoder.transformer.layers.0.self_attn.q_proj.weight`).
HF_TO_OFFICIAL: list[tuple[str, str]] = [
    # image encoder
    (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^vision_encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"image_encoder.blocks.\1.norm\2."),
    (r"^vision_encoder\.layers\.(\d+)\.", r"image_encoder.blocks.\1."),  # .attn.*, .mlp.lin1/lin2
    (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),  # neck = Sequential(conv, LN2d, conv, LN2d)
    (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"^vision_encoder\.", "image_encoder."),  # pos_embed
    # prompt encoder. HF keeps the random Fourier matrix twice (tied): once in the prompt encoder and once
    # at the top for the dense image PE; the official model has one, in prompt_encoder.pe_layer.
    (r"^prompt_encoder\.shared_embedding\.positional_embedding$", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"^shared_image_embedding\.positional_embedding$", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    # mask_downscaling = Sequential(conv, LN2d, GELU, conv, LN2d, GELU, conv): parameters at 0, 1, 3, 4, 6
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    # two-way transformer
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.layer_norm(\d)\.", r"mask_decoder.transformer.layers.\1.norm\2."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    # output_upscaling = Sequential(convT, LN2d, GELU, convT, GELU): parameters at 0, 1, 3
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
]

# The decoder's MLPs: the official MLP numbers its linears layers.0 .. layers.{n-1}; HF calls the first
# `proj_in`, the middle ones layers.0 .. layers.{n-3}, and the last `proj_out`. The last index depends on the
# depth, so these are renamed after counting the middle layers (see `_rename_hf_mlps`).
HF_MLP_PREFIX = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.")
HF_MARKERS = ("vision_encoder.", "shared_image_embedding.")

# Files a `save_pretrained` folder may hold, in the order we look for them.
HF_WEIGHT_FILES = (
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
)


def is_hf_layout(state_dict: Mapping[str, Tensor]) -> bool:
    """True when the keys use transformers' `SamModel` names."""
    return any(key.startswith(HF_MARKERS) for key in state_dict)


def hf_to_official(state_dict: Mapping[str, Tensor]) -> StateDict:
    """Rename a transformers `SamModel` state dict to the official key names (tensors are not copied)."""
    renamed: StateDict = {}
    for key, tensor in _rename_hf_mlps(state_dict).items():
        new_key = _apply_rules(key)
        if new_key in renamed:
            # Only the tied positional matrix appears twice; both copies must agree.
            other = renamed[new_key]
            same = other.is_meta or tensor.is_meta or (other.shape == tensor.shape and torch.equal(other, tensor))
            if not same:
                raise CheckpointError(
                    f"the Hugging Face checkpoint holds two different tensors for {new_key} "
                    "(shared_image_embedding and prompt_encoder.shared_embedding); they should be tied."
                )
            continue
        renamed[new_key] = tensor
    return renamed


def _apply_rules(key: str) -> str:
    for pattern, replacement in HF_TO_OFFICIAL:
        new_key, count = re.subn(pattern, replacement, key, count=1)
        if count:
            return new_key
    return key


def _rename_hf_mlps(state_dict: Mapping[str, Tensor]) -> StateDict:
    hidden_layers: dict[str, set[int]] = {}  # MLP prefix -> indexes of its middle layers
    for key in state_dict:
        match = HF_MLP_PREFIX.match(key)
        if match and (middle := re.match(r"layers\.(\d+)\.", key[match.end() :])):
            hidden_layers.setdefault(match.group(1), set()).add(int(middle.group(1)))

    renamed = {}
    for key, tensor in state_dict.items():
        match = HF_MLP_PREFIX.match(key)
        if match:
            prefix, rest = match.group(1), key[match.end() :]
            last = len(hidden_layers.get(prefix, ())) + 1
            if rest.startswith("proj_in."):
                rest = "layers.0." + rest[len("proj_in.") :]
            elif rest.startswith("proj_out."):
                rest = f"layers.{last}." + rest[len("proj_out.") :]
            elif middle := re.match(r"layers\.(\d+)\.", rest):
                rest = f"layers.{int(middle.group(1)) + 1}." + rest[middle.end() :]
            key = f"{prefix}.{rest}"
        renamed[key] = tensor
    return renamed


# ---------------------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------------------
def read_state_dict(path: str | os.PathLike, variant: str | None = None) -> StateDict:
    """Read a checkpoint into a state dict with the official key names.

    Args:
        path: an official `.pth` file (a plain state dict), a Hugging Face `save_pretrained` folder
            (`model.safetensors`, sharded `model.safetensors.index.json`, or `pytorch_model.bin`), or a
            `.safetensors` file.
        variant: the model it is meant for ("vit_b", ...), if known: an error about a damaged file then says
            which official checkpoint to download.

    Returns:
        {official key: tensor}, tensors on the CPU.

    Raises:
        CheckpointNotFoundError: `path` does not exist.
        CheckpointError: the file is truncated, corrupt, not a checkpoint, or holds more than tensors.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise input_error("checkpoint", "the path of a checkpoint file or folder (a str or a Path)", path)
    if str(path) == "":  # Path("") is the current folder
        raise CheckpointNotFoundError("checkpoint: expected the path of a checkpoint file or folder, got ''.")
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointNotFoundError(f"checkpoint: no file or folder at {path}. {_where_to_get(variant)}")
    if path.is_dir():
        state_dict = _read_hf_folder(path)
    elif not path.is_file():  # a named pipe or a device would block the read, or never end
        raise CheckpointError(f"checkpoint: {path} is not a regular file (a pipe, a socket or a device), so it holds "
                              "no checkpoint to read.")
    else:
        state_dict = _read_file(path, variant)
    if is_hf_layout(state_dict):
        state_dict = hf_to_official(state_dict)
    return state_dict


def _read_hf_folder(folder: Path) -> StateDict:
    for name in HF_WEIGHT_FILES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        if name.endswith(".index.json"):
            return _read_sharded(candidate)
        return _read_file(candidate)
    raise CheckpointNotFoundError(
        f"checkpoint: the folder {folder} holds no weights; expected one of {', '.join(HF_WEIGHT_FILES)} "
        "(a Hugging Face `save_pretrained` folder) or pass the path of a .pth file."
    )


def _read_sharded(index_path: Path) -> StateDict:
    try:
        weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"checkpoint: {index_path} is not a valid shard index ({error}).") from error
    if not (isinstance(weight_map, dict) and weight_map and all(isinstance(v, str) for v in weight_map.values())):
        raise CheckpointError(f"checkpoint: {index_path} is not a valid shard index (its weight_map should map each "
                              f"tensor's name to a shard's file name, got {describe(weight_map)}).")
    state_dict: StateDict = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if not shard_path.is_file():
            there = " (a folder is there)" if shard_path.is_dir() else ""
            raise CheckpointNotFoundError(f"checkpoint: shard {shard_path} listed in {index_path} is missing{there}.")
        state_dict.update(_read_file(shard_path))
    return state_dict


def _looks_like_safetensors(path: Path) -> bool:
    # A safetensors file starts with the length of its JSON header (little-endian uint64), then '{'.
    with open(path, "rb") as file:
        head = file.read(9)
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and header_length < path.stat().st_size


def _read_file(path: Path, variant: str | None = None) -> StateDict:
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors.torch import load_file

        try:
            loaded = load_file(str(path), device="cpu")
        except Exception as error:  # safetensors raises its own SafetensorError and OSErrors
            raise _unreadable(path, variant, "is truncated or damaged (a safetensors file whose tensors do not "
                              "fit its header: an interrupted download or copy?)") from error
    else:
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            # The safe unpickler names any function or class the file asks for: "GLOBAL io.open was not allowed".
            requested = re.search(r"GLOBAL (\S+)", str(error))
            if requested:
                raise CheckpointError(
                    f"checkpoint: refused to load {path}: besides tensors it asks to call {requested.group(1)}, "
                    "and unpickling that could run code. Only plain state dicts are accepted (loaded with "
                    "torch.load(weights_only=True)); re-save the weights with torch.save(model.state_dict(), ...)."
                ) from error
            raise _unreadable(path, variant, _what_the_file_is(path)) from error
        except Exception as error:  # truncated zip, EOFError, bad magic number, ...
            raise _unreadable(path, variant, _what_the_file_is(path)) from error
    return _as_state_dict(loaded, path)


# First bytes of files people save under a checkpoint's name by mistake.
KNOWN_HEADERS = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"\x1f\x8b": "a gzip archive",
}


def _what_the_file_is(path: Path) -> str:
    """What an unreadable file looks like, from its first bytes: the middle of the error message."""
    with open(path, "rb") as file:
        head = file.read(4096)
    if not head:
        return "is empty, not a checkpoint"
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip archive, cut short or damaged
        return "is truncated or damaged (PyTorch's zip archive is incomplete: an interrupted download or copy?)"
    if head.startswith(b"\x80"):  # a pickle: torch.save's format before PyTorch 1.6
        return (
            "is truncated or damaged (an old-format PyTorch file that ends early: an interrupted download or copy?)"
        )
    for magic, kind in KNOWN_HEADERS.items():
        if head.startswith(magic):
            return f"is {kind}, not a checkpoint"
    text = _as_text(head)
    if text is not None:
        start = text.lstrip()[:200].lower()
        if start.startswith("<") and ("<html" in start or "<!doctype html" in start):
            return "is an HTML page (a server's error or login page?), not a checkpoint"
        if start.startswith(("{", "[")):
            return "is a JSON text file, not a checkpoint"
        return "is a text file, not a checkpoint: PyTorch checkpoints are binary"
    return "is binary data in no format PyTorch reads (no zip or pickle header), not a checkpoint"


def _as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not just a character cut at the end of the sample
            return None
        text = head[: error.start].decode("utf-8")
    return text if all(c.isprintable() or c in "\t\r\n\f" for c in text) else None


def _where_to_get(variant: str | None) -> str:
    """Where a checkpoint for `variant` comes from: the small model ships with the package, Meta's are downloaded."""
    from .download import CHECKPOINTS

    if variant == "tiny":
        return ("The small model ships with the package: sam_model_registry['tiny']() or from_pretrained('tiny') "
                "loads it.")
    official = variant if variant in CHECKPOINTS else "vit_b"
    return (f"Download an official one with `python -m sam_from_scratch download {official}` "
            "(see README, 'Getting real weights').")


def _unreadable(path: Path, variant: str | None, what: str) -> CheckpointError:
    """The error for a file that could not be read: where it is, what it is, and how to get a good one."""
    from .download import CHECKPOINTS

    official = {entry.filename: name for name, entry in CHECKPOINTS.items()}.get(path.name)
    if official is not None:
        fix = (
            f"Download it again with `python -m sam_from_scratch download {official}` (it replaces a file whose "
            f"SHA-256 is wrong), or delete {path}."
        )
    else:
        fix = f"Pass the path of a checkpoint saved with torch.save(model.state_dict(), path). {_where_to_get(variant)}"
    return CheckpointError(f"checkpoint: {path} ({path.stat().st_size:,} bytes) {what}. {fix}")


def _as_state_dict(loaded, path: Path) -> StateDict:
    # Training checkpoints often wrap the weights: {"model": state_dict, "epoch": ...}.
    if isinstance(loaded, Mapping) and not _all_tensors(loaded):
        for wrapper in ("model", "state_dict"):
            if isinstance(loaded.get(wrapper), Mapping) and _all_tensors(loaded[wrapper]):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping) or not loaded or not _all_tensors(loaded):
        raise CheckpointError(
            f"checkpoint: {path} holds a {type(loaded).__name__}, not a state dict of tensors "
            "(expected what torch.save(model.state_dict(), path) writes)."
        )
    return dict(loaded)


def _all_tensors(mapping: Mapping) -> bool:
    return all(isinstance(key, str) and isinstance(value, Tensor) for key, value in mapping.items())


# ---------------------------------------------------------------------------------------------------------
# Which variant is this?
# ---------------------------------------------------------------------------------------------------------
def _describe(sig: Mapping[str, int]) -> str:
    return (
        f"{sig['encoder_embed_dim']}-dim image encoder with {sig['encoder_depth']} blocks, "
        f"{sig['image_embedding_size']}x{sig['image_embedding_size']} embedding grid, "
        f"decoder width {sig['prompt_embed_dim']}"
    )


# ---------------------------------------------------------------------------------------------------------
# Loading into a model
# ---------------------------------------------------------------------------------------------------------
WRAPPERS = {"module.": "a DistributedDataParallel (or DataParallel) model: save model.module.state_dict()",
            "_orig_mod.": "a model compiled with torch.compile: save the original module's state_dict()"}


def wrapper_hint(state_dict: StateDict) -> str:
    """Advice for weights saved under a wrapper's prefix (every key starting with 'module.', say), else ""."""
    for prefix, where in WRAPPERS.items():
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            return (f" Every key starts with {prefix!r}: the weights were saved from {where}, or strip the prefix: "
                    f"{{key.removeprefix({prefix!r}): value for key, value in state_dict.items()}}.")
    return ""


def load_into(
    model: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, Tensor],
    variant: str,
    source: str | None = None,
) -> nn.Module:
    """Check that `checkpoint` fits `model` exactly and holds finite numbers, then load it (strict).

    Args:
        model: a `Sam` built for `variant` (parameters on the meta device are replaced, not copied into).
        checkpoint: a path accepted by `read_state_dict`, or a state dict already in memory.
        variant: the name `model` was built as ("vit_b", "vit_l", "vit_h", "tiny", or "custom"); used in messages.
        source: where a state dict in memory came from (a file name), for messages.

    Returns:
        `model`, with the checkpoint's weights.

    Raises:
        CheckpointNotFoundError, CheckpointError: with the path and what to do about it.
    """
    if not isinstance(model, nn.Module):
        raise input_error("model", f"the SAM model (an nn.Module) built as {variant!r} to load the weights into", model)
    if isinstance(checkpoint, Mapping):
        source = source or "the state dict"
        state_dict = dict(checkpoint)
        if is_hf_layout(state_dict):
            state_dict = hf_to_official(state_dict)
    else:
        source = str(checkpoint)
        state_dict = read_state_dict(checkpoint, variant)

    expected = model.state_dict()
    found = signature(state_dict)
    if found is None:
        raise CheckpointError(
            f"checkpoint: {source} does not look like a SAM checkpoint (no image_encoder.patch_embed.proj.weight, "
            f"image_encoder.pos_embed or mask_decoder.iou_token.weight); its keys start with "
            f"{_first(sorted(state_dict), 3)}.{wrapper_hint(state_dict)}"
        )
    wanted = signature(expected)
    if wanted is not None and found != wanted:
        guess = guess_variant(state_dict)
        if guess is None:
            hint = "It matches none of the known variants (vit_b, vit_l, vit_h, tiny)."
        elif guess != variant:
            hint = f"This looks like {guess}: build it with sam_model_registry['{guess}'](checkpoint=...)."
        else:
            hint = f"The checkpoint is a {guess}; the model was built from a different config."
        raise CheckpointError(
            f"checkpoint: {source} does not fit the {variant} model: the model has a {_describe(wanted)}, "
            f"the checkpoint a {_describe(found)}. {hint}"
        )

    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected)}")
        raise CheckpointError(f"checkpoint: {source} does not match the {variant} model: {'; '.join(parts)}.")

    wrong_shapes = [
        f"{key} {tuple(state_dict[key].shape)} (model {tuple(tensor.shape)})"
        for key, tensor in expected.items()
        if state_dict[key].shape != tensor.shape
    ]
    if wrong_shapes:
        raise CheckpointError(
            f"checkpoint: {source} does not match the {variant} model: {len(wrong_shapes)} tensor(s) with another "
            f"shape: {_first(wrong_shapes)}."
        )

    not_finite = [key for key, tensor in state_dict.items()
                  if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if not_finite:
        raise CheckpointError(
            f"checkpoint: {source} holds NaN or infinite values in {len(not_finite)} tensor(s): {_first(not_finite)}. "
            "The file is damaged, or was saved from a training run that diverged."
        )

    on_meta = any(tensor.is_meta for tensor in expected.values())
    model.load_state_dict(state_dict, strict=True, assign=on_meta)
    return model


def _first(items: list[str], count: int = 5) -> str:
    shown = ", ".join(items[:count])
    return shown + (f", ... ({len(items) - count} more)" if len(items) > count else "")
