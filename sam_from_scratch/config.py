"""The configurations of SAM: every number that differs between variants, and telling variants apart.

A leaf module: it imports nothing from the package, so every room may import it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

# The files that ship inside the package: the bundled small model and the sample photographs.
DATA_DIR = Path(os.environ.get("SAM_FROM_SCRATCH_DATA", Path(__file__).resolve().parent / "data"))
TINY_CHECKPOINT = DATA_DIR / "tiny" / "sam_tiny.pt"


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

    @property
    def image_embedding_size(self) -> int:
        return self.image_size // self.patch_size


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
