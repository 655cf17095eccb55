"""torch.compile for the image encoder, with a fallback to eager where compiling fails."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import SamInputError
from .checks import check_model


def compile_image_encoder(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile `model.image_encoder` in place with nn.Module.compile; returns `model`.

    The module stays the same object, so the state-dict keys stay the official ones. Compiling happens at
    the first call (slow: minutes for vit_h on a CPU), so we make that call here on a zero image of the
    model's input size; if it fails (no C++ compiler, an unsupported device) the encoder warns once and
    stays eager, and `model.image_encoder.compile_failed` is True. `compile_kwargs` go to torch.compile.
    A `model` that is not a Sam (a name, a predictor: the hint says what to pass), or `compile_kwargs` that
    torch.compile refuses (mode="fast", an unknown keyword), raise SamInputError.
    """
    check_model("model", model, whole=True)
    encoder = model.image_encoder
    try:
        encoder.compile(**compile_kwargs)  # torch.compile checks its arguments here, before compiling anything
    except (TypeError, ValueError, RuntimeError) as error:
        raise SamInputError(
            f"compile_kwargs: expected arguments of torch.compile, got {compile_kwargs!r}, which it refused: {error}"
        ) from error
    weight = encoder.patch_embed.proj.weight
    try:
        with torch.no_grad():
            encoder(torch.zeros(1, 3, encoder.img_size, encoder.img_size, device=weight.device, dtype=weight.dtype))
        encoder.compile_failed = False
    except Exception as error:  # compilation errors come in many types (backend, C++ toolchain, ...)
        encoder._compiled_call_impl = None  # what nn.Module.compile set: back to the eager forward
        encoder.compile_failed = True
        warnings.warn(
            f"torch.compile of the image encoder failed ({type(error).__name__}: {str(error)[:200]}); "
            "running the eager image encoder instead.",
            RuntimeWarning,
            stacklevel=2,
        )
    return model
