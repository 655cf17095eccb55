"""Building SAM from a configuration, and loading weights into it.

The official checkpoints come in three sizes that differ only in the image encoder; `sam_model_registry`
maps their names to builders, exactly like the official package. `tiny` is our own small model, trained
on generated scenes (see notebook 11), bundled in sam_from_scratch/data/tiny/ so everything works offline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial

import torch
from torch import nn

from .checkpoint import load_into, read_state_dict, wrapper_hint
from .config import CONFIGS, TINY_CHECKPOINT, SamConfig, config_name, data_dir_note, guess_variant
from .device import auto_device
from .errors import SamInputError, check_switch, expand_user
from .fast import check_dtype, speed_up
from .modeling.image_encoder import ImageEncoderViT
from .modeling.mask_decoder import MaskDecoder
from .modeling.prompt_encoder import PromptEncoder
from .modeling.sam import Sam
from .modeling.transformer import TwoWayTransformer


def build_sam(
    config: SamConfig, checkpoint: str | os.PathLike | None = None, variant: str | None = None, fast: bool = True
) -> Sam:
    """Build a Sam for `config`, in eval mode, optionally loading `checkpoint` into it.

    checkpoint: a path to an official .pth or a Hugging Face folder, or a state dict already in memory.
    fast: swap in the fast paths (sam_from_scratch.fast.speed_up: same parameters, the same results up to
        float rounding, faster);
    False gives the plain model of notebooks 02-08.

    The official call `build_sam(checkpoint=...)` (SAM vit_h) is `sam_from_scratch.build_sam`, the twin of
    the official module; this is the course's builder, for any configuration.
    """
    if not isinstance(config, SamConfig):
        raise SamInputError(
            f"config: expected a SamConfig (e.g. sam_from_scratch.CONFIGS['vit_b']), got {type(config).__name__}."
        )
    _check_checkpoint_argument(checkpoint)
    check_switch("fast", fast)  # fast="no" would count as True
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
        load_into(sam, checkpoint, variant or config_name(config))
    return speed_up(sam) if fast else sam


def _check_download_arguments(download_kwargs: dict) -> None:
    """from_pretrained's extra keywords go to download_checkpoint: a misspelt one is an error, not ignored, and
    their values are checked whatever the name ("tiny" and a path download nothing, but a bad mirror= or
    timeout= is still a mistake to report, not to ignore)."""
    import inspect

    from .download import check_download_arguments, download_checkpoint

    known = [name for name in inspect.signature(download_checkpoint).parameters if name != "name"]
    unknown = [name for name in download_kwargs if name not in known]
    if unknown:
        raise TypeError(f"from_pretrained() got an unexpected keyword argument {unknown[0]!r}; besides name, device "
                        f"and dtype it takes download_checkpoint's: {', '.join(known)}.")
    check_download_arguments(**download_kwargs)


def _check_checkpoint_argument(checkpoint) -> None:
    """None, a path or a state dict, else a SamInputError naming the argument (before any model is built)."""
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike, Mapping)):
        raise SamInputError(
            "checkpoint: expected a path to a checkpoint file or Hugging Face folder, a state dict, or None, "
            f"got {type(checkpoint).__name__} {checkpoint!r:.60}."
        )


def _builder(name: str):
    def build(checkpoint: str | os.PathLike | None = None) -> Sam:
        return build_sam(CONFIGS[name], checkpoint=checkpoint, variant=name)

    build.__name__ = build.__qualname__ = f"build_sam_{name}"
    build.__doc__ = f"Build SAM {name} (optionally loading `checkpoint`: an official .pth or a Hugging Face folder)."
    return build


build_sam_vit_b = _builder("vit_b")
build_sam_vit_l = _builder("vit_l")
build_sam_vit_h = _builder("vit_h")
build_sam_tiny = _builder("tiny")

class _Registry(dict):
    """The official registry is a plain dict; this one also says which names it knows when a name is wrong."""

    def __missing__(self, name):
        raise KeyError(f"{name!r} is not a SAM variant here; the registry knows {', '.join(map(repr, self))}")


sam_model_registry = _Registry({
    "default": build_sam_vit_h,
    "vit_h": build_sam_vit_h,
    "vit_l": build_sam_vit_l,
    "vit_b": build_sam_vit_b,
    "tiny": build_sam_tiny,
})


def from_pretrained(
    name: str = "tiny", device: str | torch.device = "auto", dtype: torch.dtype | None = None, **download_kwargs
) -> Sam:
    """A ready-to-use model on `device`.

    `name` is "tiny" (bundled in data/), an official name ("vit_b", "vit_l", "vit_h": downloaded once into the
    cache, see `sam_from_scratch.download`), or a path to a checkpoint file or Hugging Face folder whose
    variant is recognised from its shapes. `dtype` (e.g. torch.bfloat16 or "bfloat16", or float16 on a GPU)
    converts the weights; inputs are cast on the way in and mask logits come out in float32 (notebook 12).
    """
    dtype = check_dtype(dtype)  # before anything is loaded or downloaded; a name ("bfloat16") as its torch.dtype
    _check_download_arguments(download_kwargs)
    if not isinstance(name, (str, os.PathLike)):
        raise SamInputError(
            f"name: expected 'tiny', 'vit_b', 'vit_l', 'vit_h' or a path to a checkpoint, got {type(name).__name__} "
            f"{name!r:.60}."
        )
    target = auto_device(device)
    if name == "tiny":
        if not TINY_CHECKPOINT.exists():
            raise FileNotFoundError(
                f"name: the bundled tiny model was not found at {TINY_CHECKPOINT}; restore data/ from the repository "
                f"or rebuild it with `python -m sam_from_scratch train-tiny`.{data_dir_note()}"
            )
        model = sam_model_registry["tiny"](checkpoint=TINY_CHECKPOINT)
    elif name in ("vit_b", "vit_l", "vit_h", "default"):
        from .download import download_checkpoint

        variant = "vit_h" if name == "default" else name
        model = sam_model_registry[variant](checkpoint=download_checkpoint(variant, **download_kwargs))
    elif expand_user("name", name, "a path to a checkpoint").exists():  # ~/sam.pth as a shell reads it
        name = expand_user("name", name, "a path to a checkpoint")
        state_dict = read_state_dict(name)  # read once: the shapes say which variant, then it is loaded
        variant = guess_variant(state_dict)
        if variant is None:
            raise SamInputError(
                f"name: could not tell which SAM variant {name} holds: its shapes match none of vit_b, vit_l, vit_h "
                "and tiny, or a part is missing. Build it with sam_model_registry['vit_b'](checkpoint=path) (or the "
                f"variant it should be) to see which keys or shapes differ.{wrapper_hint(state_dict)}"
            )
        model = load_into(build_sam(CONFIGS[variant], fast=False), state_dict, variant, source=str(name))
    else:
        missing = f" There is no file or folder at {name}." if _looks_like_a_path(str(name)) else ""
        raise SamInputError(
            f"name: expected 'tiny', 'vit_b', 'vit_l', 'vit_h' or a path to a checkpoint, got {name!r}.{missing}"
        )
    return speed_up(model, dtype).to(target)


def _looks_like_a_path(name: str) -> bool:
    return os.sep in name or "/" in name or name.endswith((".pth", ".pt", ".bin", ".safetensors"))
