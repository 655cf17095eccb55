"""Building SAM from a configuration, and loading weights into it.

The official checkpoints come in three sizes that differ only in the image encoder; `sam_model_registry`
maps their names to builders, exactly like the official package. `tiny` is our own small model, trained
on generated scenes (see notebook 11), bundled in data/tiny/ so everything works offline.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .device import auto_device
from .errors import SamInputError
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .transformer import TwoWayTransformer

DATA_DIR = Path(os.environ.get("SAM_FROM_SCRATCH_DATA", Path(__file__).resolve().parent.parent / "data"))
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
    # Sized to train in 30 CPU-minutes: 48 px input, 4 px patches, 12x12 embedding grid, 48x48 mask logits
    # (masks at the full input resolution).
    "tiny": SamConfig(
        encoder_embed_dim=128,
        encoder_depth=4,
        encoder_num_heads=4,
        encoder_global_attn_indexes=(1, 3),
        image_size=48,
        patch_size=4,
        window_size=6,
        prompt_embed_dim=64,
        decoder_num_heads=4,
        decoder_mlp_dim=256,
        iou_head_hidden_dim=64,
    ),
}


def build_sam(config: SamConfig, checkpoint: str | os.PathLike | None = None, variant: str | None = None) -> Sam:
    """Build a Sam for `config`, in eval mode, optionally loading `checkpoint` into it."""
    grid = config.image_embedding_size
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.encoder_embed_dim,
            depth=config.encoder_depth,
            num_heads=config.encoder_num_heads,
            mlp_ratio=config.mlp_ratio,
            out_chans=config.prompt_embed_dim,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=config.window_size,
            global_attn_indexes=config.encoder_global_attn_indexes,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=config.decoder_num_heads,
                mlp_dim=config.decoder_mlp_dim,
            ),
            num_multimask_outputs=3,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean),
        pixel_std=list(config.pixel_std),
    )
    sam.eval()
    if checkpoint is not None:
        from .checkpoint import load_into

        load_into(sam, checkpoint, variant or config_name(config))
    return sam


def config_name(config: SamConfig) -> str:
    """The registry name of a config ('custom' when it is none of them)."""
    for name, known in CONFIGS.items():
        if known == config:
            return name
    return "custom"


def _builder(name: str):
    def build(checkpoint: str | os.PathLike | None = None) -> Sam:
        return build_sam(CONFIGS[name], checkpoint=checkpoint, variant=name)

    build.__name__ = f"build_sam_{name}"
    build.__doc__ = f"Build SAM {name} (optionally loading `checkpoint`: an official .pth or a Hugging Face folder)."
    return build


build_sam_vit_b = _builder("vit_b")
build_sam_vit_l = _builder("vit_l")
build_sam_vit_h = _builder("vit_h")
build_sam_tiny = _builder("tiny")

sam_model_registry = {
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "tiny": build_sam_tiny,
}


def from_pretrained(
    name: str = "tiny", device: str | torch.device = "auto", dtype: torch.dtype | None = None, **download_kwargs
) -> Sam:
    """A ready-to-use model on `device`.

    `name` is "tiny" (bundled in data/), an official name ("vit_b", "vit_l", "vit_h": downloaded once into the
    cache, see `sam_from_scratch.download`), or a path to a checkpoint file or Hugging Face folder whose
    variant is recognised from its shapes. `dtype` (e.g. torch.bfloat16, or torch.float16 on a GPU) converts
    the weights; inputs are cast on the way in and mask logits come out in float32 (notebook 12).
    """
    if dtype is not None and dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise SamInputError(f"dtype: expected torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}.")
    target = auto_device(device)
    if name == "tiny":
        if not TINY_CHECKPOINT.exists():
            raise FileNotFoundError(
                f"name: the bundled tiny model was not found at {TINY_CHECKPOINT}; "
                "restore data/ from the repository or rebuild it with `python -m sam_from_scratch train-tiny`."
            )
        model = sam_model_registry["tiny"](checkpoint=TINY_CHECKPOINT)
    elif name in ("vit_b", "vit_l", "vit_h", "default"):
        from .download import download_checkpoint

        variant = "vit_h" if name == "default" else name
        model = sam_model_registry[variant](checkpoint=download_checkpoint(variant, **download_kwargs))
    elif Path(name).exists():
        from .checkpoint import guess_variant, read_state_dict

        variant = guess_variant(read_state_dict(name))
        if variant is None:
            raise SamInputError(f"name: could not tell which SAM variant {name} holds; build it with sam_model_registry[...] instead.")
        model = sam_model_registry[variant](checkpoint=name)
    else:
        raise SamInputError(
            f"name: expected 'tiny', 'vit_b', 'vit_l', 'vit_h' or a path to a checkpoint, got {name!r}."
        )
    return model.to(device=target, dtype=dtype)


def config_dict(config: SamConfig) -> dict:
    """The config as plain JSON-able data (for model cards)."""
    data = asdict(config)
    data["encoder_global_attn_indexes"] = list(config.encoder_global_attn_indexes)
    return data
