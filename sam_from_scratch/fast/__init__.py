"""The fast paths (notebook 12), apart from the plain model of notebooks 02-08.

`speed_up(model)` swaps, in place, each plain module of a Sam for its fast subclass: the same parameters
under the same names, so the official checkpoints load either way and the results agree.

- attention.py: fused attention (F.scaled_dot_product_attention), the encoder's relative-position bias built
  in chunks (or, in bfloat16 on a CPU, folded into q and k where the CPU has AMX, else the global blocks'
  scores written out a few query rows at a time);
- attention.py also holds the decoder's cross-attentions with the small matrices multiplied first;
- decoder.py: one shared image side for many prompts on one image, the first layer's projections of it kept
  between clicks without a mask prompt, the upscaling as matrix products in block order (on a CPU the second
  with its GELU in one call to oneDNN);
- memory.py: keep_freed_memory(), the malloc setting SamPredictor makes on a CPU;
- precision.py: the casts that let a bfloat16/float16 model run accurately (`speed_up(model, dtype=...)`), and
  the patch embedding's tokens made contiguous once for the whole residual stream;
- compile.py: torch.compile of the image encoder, with a fallback.

Everything the package builds for you (sam_model_registry, from_pretrained, hence the predictor, the mask
generator, the command line and the widgets) is already sped up; `build_sam(config, fast=False)` or the
classes of `sam_from_scratch.modeling` give the plain model.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling import image_encoder, layers, mask_decoder, positional_encoding, prompt_encoder, transformer
from ..errors import SamInputError, check_switch
from ..modeling.sam import Sam
from .checks import check_model
from .attention import FastDecoderAttention, FastEncoderAttention
from .compile import compile_image_encoder
from .decoder import FastMaskDecoder, FastTwoWayAttentionBlock, FastTwoWayTransformer
from .precision import (FastImageEncoderViT, FastLayerNorm2d, FastPatchEmbed, FastPositionEmbeddingRandom,
                        FastPromptEncoder)

FAST_CLASSES: dict[type, type] = {
    image_encoder.ImageEncoderViT: FastImageEncoderViT,
    image_encoder.PatchEmbed: FastPatchEmbed,
    image_encoder.Attention: FastEncoderAttention,
    transformer.Attention: FastDecoderAttention,
    transformer.TwoWayAttentionBlock: FastTwoWayAttentionBlock,
    transformer.TwoWayTransformer: FastTwoWayTransformer,
    mask_decoder.MaskDecoder: FastMaskDecoder,
    prompt_encoder.PromptEncoder: FastPromptEncoder,
    positional_encoding.PositionEmbeddingRandom: FastPositionEmbeddingRandom,
    layers.LayerNorm2d: FastLayerNorm2d,
}
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """None (keep the weights' dtype), one of DTYPES or its name ("bfloat16"), as a torch.dtype; anything else is
    a SamInputError naming the argument."""
    if isinstance(dtype, str) and dtype in ("float32", "bfloat16", "float16"):  # as SamPredictor and --dtype take it
        dtype = getattr(torch, dtype)
    if dtype is not None and dtype not in DTYPES:
        raise SamInputError(f"dtype: expected torch.float32, torch.bfloat16 or torch.float16 (or their names), got "
                            f"{dtype!r}.")
    return dtype


def speed_up(model: nn.Module, dtype: torch.dtype | None = None, compile: bool = False) -> nn.Module:
    """Swap in the fast subclasses (in place; calling it again changes nothing); returns `model`.

    model: a Sam, or one of its modules (a block, an attention layer): its plain submodules are swapped.
    dtype: convert the weights (torch.float32, torch.bfloat16, or torch.float16 on a GPU; or their names).
    compile: also compile the image encoder (see compile_image_encoder; needs a whole Sam).

    Raises SamInputError for a `model` that is not an nn.Module (a name, a state dict, a predictor: the hint
    says what to pass), `compile` that is not True or False (a string such as "no" would count as True), or
    compile=True for a module without an image encoder; all before anything is changed.
    """
    check_model("model", model, whole=False)
    if _official(model):
        raise SamInputError(
            "model: expected a model of this package, got the official segment_anything "
            f"{type(model).__name__}, which has none of the modules speed_up swaps. Load its weights into ours: "
            "sam_model_registry['vit_b'](checkpoint=path) or from_pretrained(path), sped up already.")
    dtype = check_dtype(dtype)
    check_switch("compile", compile)
    if compile:
        check_model("model", model, whole=True)
    for module in model.modules():
        fast = FAST_CLASSES.get(type(module))
        if fast is not None:
            module.__class__ = fast  # a subclass without state of its own: the module keeps its parameters
    if dtype is not None:
        model.to(dtype)
        if isinstance(model, Sam):  # pixels are normalised in float32; the encoder casts the result
            model.pixel_mean, model.pixel_std = model.pixel_mean.float(), model.pixel_std.float()
    if compile:
        compile_image_encoder(model)
    return model


def is_fast(model: nn.Module) -> bool:
    """True when no module of `model` (a Sam or one of its modules) is left that speed_up would swap; False for
    the official package's model, which has none of our fast modules."""
    check_model("model", model, whole=False)
    return not _official(model) and not any(type(module) in FAST_CLASSES for module in model.modules())


def _official(model: nn.Module) -> bool:
    return any(type(module).__module__.startswith("segment_anything.") for module in model.modules())


__all__ = ["DTYPES", "FAST_CLASSES", "check_dtype", "compile_image_encoder", "is_fast", "speed_up"]
