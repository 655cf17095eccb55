"""Switches for the fast path (notebook 12). The fast path is the same modules with the same weights.

- Fused attention is on by default: every attention module has a ``use_sdpa`` flag, and
  ``set_fused_attention(model, False)`` gives the plain, written-out attention of notebooks 05 and 06.
- Reduced precision is plain PyTorch: ``model.to(torch.bfloat16)`` (or ``from_pretrained(..., dtype=...)``).
  Inputs are cast where they enter, positional codes and LayerNorm2d statistics stay in float32, and mask
  logits leave the decoder in float32.
- ``compile_image_encoder(model)`` compiles the image encoder's forward with ``torch.compile`` and falls
  back to the eager forward, with one warning, where compiling fails (no C++ compiler, unsupported device).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def set_fused_attention(model: nn.Module, enabled: bool = True) -> int:
    """Switch every attention module of `model` to F.scaled_dot_product_attention (True) or to the plain
    softmax(q k^T / sqrt(d)) v (False). Returns how many modules were switched."""
    switched = 0
    for module in model.modules():
        if hasattr(module, "use_sdpa"):
            module.use_sdpa = enabled
            switched += 1
    return switched


def compile_image_encoder(model: nn.Module, **compile_kwargs) -> nn.Module:
    """Compile `model.image_encoder`'s forward in place; returns `model`.

    Only the forward is replaced (not the module), so the state-dict keys stay the official ones. The first
    call compiles (slow: minutes for vit_h on a CPU); if that fails, the encoder warns once and keeps
    running its eager forward. `compile_kwargs` go to torch.compile (e.g. mode="max-autotune").
    """
    encoder = model.image_encoder
    eager_forward = encoder.forward  # the bound method of the class
    compiled_forward = torch.compile(eager_forward, **compile_kwargs)
    state = {"failed": False}

    def forward(x: torch.Tensor) -> torch.Tensor:
        if not state["failed"]:
            try:
                return compiled_forward(x)
            except Exception as error:  # compilation errors come in many types (backend, C++ toolchain, ...)
                state["failed"] = True
                warnings.warn(
                    f"torch.compile of the image encoder failed ({type(error).__name__}: {str(error)[:200]}); "
                    "running the eager image encoder instead.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return eager_forward(x)

    encoder.forward = forward
    encoder.compile_failed = lambda: state["failed"]  # for tests and the benchmark
    return model


__all__ = ["set_fused_attention", "compile_image_encoder"]
