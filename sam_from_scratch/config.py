"""The configurations of SAM: every number that differs between variants, and telling variants apart.

A leaf module: it imports nothing from the package, so every room may import it. That is why a bad SamConfig
raises a plain ValueError (not errors.SamInputError, a ValueError too) with the same kind of message:
"<field>: expected ..., got ...".
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

# The files that ship inside the package: the bundled small model and the sample photographs. The environment
# variable SAM_FROM_SCRATCH_DATA points elsewhere (a folder with the same tiny/ and images/ inside).
DATA_ENV = "SAM_FROM_SCRATCH_DATA"
DATA_DIR = Path(os.environ.get(DATA_ENV, Path(__file__).resolve().parent / "data"))
TINY_CHECKPOINT = DATA_DIR / "tiny" / "sam_tiny.pt"


def data_dir_note() -> str:
    """For messages about a missing bundled file: " <DATA_ENV> is set to '...': ..." when the data folder was
    moved by the environment, else ""."""
    if DATA_ENV not in os.environ:
        return ""
    return f" {DATA_ENV} is set to {os.environ[DATA_ENV]!r}: unset it to use the package's own data."


@dataclass(frozen=True)
class SamConfig:
    """Every number that differs between SAM variants."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256  # also the encoder's output channels and the decoder width
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)

    def __post_init__(self) -> None:
        _check_config(self)

    @property
    def image_embedding_size(self) -> int:
        return self.image_size // self.patch_size


# ---------------------------------------------------------------------------------------------------------
# Checking a configuration when it is made, not at the first set_image deep inside attention
# ---------------------------------------------------------------------------------------------------------
def _describe(value) -> str:
    # errors.describe, repeated here: config.py imports nothing from the package
    text = repr(value)
    return f"{type(value).__name__} {text[:57] + '...' if len(text) > 60 else text}"


def _bad(field: str, expected: str, value, hint: str = "") -> ValueError:
    return ValueError(f"{field}: expected {expected}, got {_describe(value)}." + (" " + hint if hint else ""))


def _is_int(value) -> bool:
    # errors.is_int, repeated here for the same reason as _describe
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    # errors.is_number that is also finite, repeated here for the same reason
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _divisors_near(n: int, near: int, count: int = 3) -> str:
    found = sorted((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - near), d))[:count]
    return ", ".join(map(str, sorted(found)))


def _check_config(config: SamConfig) -> None:
    """Every field of `config` has a value SAM's modules can be built and run with; else a ValueError naming it.

    What the architecture needs: the image is cut into a whole number of patches; each attention head takes a
    whole number of channels (the decoder's cross-attentions run at half its width: attention_downsample_rate
    2); the prompt encoder's Fourier features fill prompt_embed_dim in two halves; the mask decoder upscales
    with prompt_embed_dim // 4 and // 8 channels, the mask encoder with mask_in_chans // 4; pixel_std divides.
    """
    for field in ("encoder_embed_dim", "encoder_depth", "encoder_num_heads", "image_size", "patch_size",
                  "prompt_embed_dim", "mask_in_chans", "decoder_depth", "decoder_num_heads", "decoder_mlp_dim",
                  "iou_head_hidden_dim"):
        value = getattr(config, field)
        if not _is_int(value) or value < 1:
            raise _bad(field, "a positive integer", value)
    if not _is_int(config.window_size) or config.window_size < 0:
        raise _bad("window_size", "an integer >= 0 (the side of the attention windows in tokens; 0: global "
                   "attention in every block)", config.window_size)
    if not _is_number(config.mlp_ratio) or config.mlp_ratio <= 0 or config.encoder_embed_dim * config.mlp_ratio < 1:
        raise _bad("mlp_ratio", f"a finite number > 0 giving an MLP of at least 1 channel (encoder_embed_dim * "
                   f"mlp_ratio >= 1, encoder_embed_dim = {config.encoder_embed_dim})", config.mlp_ratio)

    indexes = config.encoder_global_attn_indexes
    if isinstance(indexes, (str, bytes)) or not hasattr(indexes, "__iter__") or not all(map(_is_int, indexes)):
        raise _bad("encoder_global_attn_indexes", "a tuple of block indexes (integers), e.g. (2, 5, 8, 11)", indexes)
    indexes = tuple(indexes)
    beyond = [i for i in indexes if not 0 <= i < config.encoder_depth]
    if beyond:
        raise _bad("encoder_global_attn_indexes", f"block indexes from 0 to {config.encoder_depth - 1} "
                   f"(encoder_depth = {config.encoder_depth})", indexes,
                   f"Block {beyond[0]} does not exist, so it would be ignored.")
    object.__setattr__(config, "encoder_global_attn_indexes", indexes)  # a list works as a tuple, hashable

    for field, positive in (("pixel_mean", False), ("pixel_std", True)):
        value = getattr(config, field)
        numbers_ok = isinstance(value, (tuple, list)) and len(value) == 3 and all(map(_is_number, value))
        if not numbers_ok or (positive and min(value) <= 0):
            wanted = "3 finite numbers > 0" if positive else "3 finite numbers"
            hint = "Each channel is divided by its std: a 0 gives NaN masks and scores." if numbers_ok else ""
            raise _bad(field, f"{wanted}, one per channel R, G, B (on the 0..255 scale)", value, hint)
        object.__setattr__(config, field, tuple(value))

    if config.image_size % config.patch_size:
        raise _bad("patch_size", f"a divisor of image_size = {config.image_size} (the image is cut into a whole "
                   "number of patches per side)", config.patch_size,
                   f"Divisors of {config.image_size} near it: {_divisors_near(config.image_size, config.patch_size)}.")
    if config.encoder_embed_dim % config.encoder_num_heads:
        raise _bad("encoder_num_heads", f"a divisor of encoder_embed_dim = {config.encoder_embed_dim} (each head "
                   "takes encoder_embed_dim / encoder_num_heads channels)", config.encoder_num_heads,
                   f"Divisors of {config.encoder_embed_dim} near it: "
                   f"{_divisors_near(config.encoder_embed_dim, config.encoder_num_heads)}.")
    if config.prompt_embed_dim % 2 or config.prompt_embed_dim < 8:
        raise _bad("prompt_embed_dim", "an even integer >= 8 (the prompt encoder's Fourier features fill it in two "
                   "halves; the mask decoder upscales with prompt_embed_dim // 4 and // 8 channels)",
                   config.prompt_embed_dim)
    half = config.prompt_embed_dim // 2
    if half % config.decoder_num_heads:
        raise _bad("decoder_num_heads", f"a divisor of prompt_embed_dim / 2 = {half} (the decoder's "
                   "cross-attentions run at half of prompt_embed_dim, attention_downsample_rate 2)",
                   config.decoder_num_heads, f"Divisors of {half} near it: {_divisors_near(half, config.decoder_num_heads)}.")
    if config.mask_in_chans < 4:
        raise _bad("mask_in_chans", "an integer >= 4 (the mask encoder's first convolution has mask_in_chans // 4 "
                   "channels)", config.mask_in_chans)


CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    # Our small model: same modules, smaller numbers (trained in notebook 11 / `train-tiny`).
    # 96 px input cut into 8 px patches: the same 12x12 embedding grid (and cost per step) as a 48 px input
    # with 4 px patches, with scenes a learner can look at. Mask logits are 48x48, upscaled to 96x96.
    "tiny": SamConfig(
        encoder_embed_dim=128,
        encoder_depth=4,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(1, 3),
        image_size=96,
        patch_size=8,
        window_size=6,
        prompt_embed_dim=64,
        decoder_num_heads=4,
        decoder_mlp_dim=256,
        iou_head_hidden_dim=64,
    ),
}


def config_name(config: SamConfig) -> str:
    """The registry name of a config ('custom' when it is none of them)."""
    for name, known in CONFIGS.items():
        if known == config:
            return name
    return "custom"


def config_dict(config: SamConfig) -> dict:
    """The config as plain JSON-able data (for model cards)."""
    data = asdict(config)
    data["encoder_global_attn_indexes"] = list(config.encoder_global_attn_indexes)
    return data


# ---------------------------------------------------------------------------------------------------------
# Which variant is this?
# ---------------------------------------------------------------------------------------------------------
def signature(state_dict: Mapping[str, Tensor]) -> dict[str, int] | None:
    """The numbers that tell SAM variants apart, read from tensor shapes (None if not a SAM state dict).

    encoder_embed_dim: patch embedding channels; encoder_depth: number of blocks; prompt_embed_dim: decoder
    width; image_embedding_size: side of the position-embedding grid (image_size / patch_size).
    """
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")  # (embed_dim, 3, patch, patch)
    pos = state_dict.get("image_encoder.pos_embed")  # (1, grid, grid, embed_dim)
    token = state_dict.get("mask_decoder.iou_token.weight")  # (1, prompt_embed_dim)
    if patch is None or pos is None or token is None:
        return None
    blocks = {int(m.group(1)) for key in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", key))}
    return {
        "encoder_embed_dim": patch.shape[0],
        "encoder_depth": len(blocks),
        "prompt_embed_dim": token.shape[1],
        "image_embedding_size": pos.shape[1],
    }


def _config_signature(config) -> dict[str, int]:
    return {
        "encoder_embed_dim": config.encoder_embed_dim,
        "encoder_depth": config.encoder_depth,
        "prompt_embed_dim": config.prompt_embed_dim,
        "image_embedding_size": config.image_size // config.patch_size,
    }


def guess_variant(state_dict: Mapping[str, Tensor]) -> str | None:
    """The name in `CONFIGS` whose shapes this state dict has ("vit_b", "vit_l", "vit_h", "tiny"), or None."""
    found = signature(state_dict)
    if found is None:
        return None
    for name, config in CONFIGS.items():
        if _config_signature(config) == found:
            return name
    return None
