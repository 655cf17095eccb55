"""The official module `segment_anything.build_sam`, under the same name: the named builders and the registry.

They live in `build.py` (the course's builder for any configuration); this module gives them the official import
path, `from sam_from_scratch.build_sam import build_sam_vit_b`, and adds the official alias `build_sam`. The model
classes the official module imports can be imported from it too.
"""

from __future__ import annotations

import os

from .build import build_sam_tiny, build_sam_vit_b, build_sam_vit_h, build_sam_vit_l, sam_model_registry
from .build import build_sam as build_from_config
from .config import CONFIGS, SamConfig
from .modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer  # as the official module


def build_sam(checkpoint: str | os.PathLike | SamConfig | None = None, *, fast: bool = True) -> Sam:
    """SAM vit_h, optionally loading `checkpoint`, as the official `build_sam` (an alias of build_sam_vit_h).

    Given a SamConfig instead of a checkpoint, builds that configuration with random weights: the course's call
    `build_sam(config)` (`sam_from_scratch.build.build_sam`, which also takes a checkpoint for it).
    fast: False gives the plain model of notebooks 02-08.
    """
    if isinstance(checkpoint, SamConfig):
        return build_from_config(checkpoint, fast=fast)
    return build_from_config(CONFIGS["vit_h"], checkpoint=checkpoint, variant="vit_h", fast=fast)


__all__ = ["build_sam", "build_sam_tiny", "build_sam_vit_b", "build_sam_vit_h", "build_sam_vit_l", "sam_model_registry",
           "ImageEncoderViT", "MaskDecoder", "PromptEncoder", "Sam", "TwoWayTransformer"]
