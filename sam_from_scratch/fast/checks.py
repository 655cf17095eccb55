"""What the fast paths check: that the public functions get a model (not a name, weights or a predictor);
whether a module still runs as this package wrote it, so that a fast path may read its weights directly;
whether torch runs the code eagerly, without gradients; whether what a kept result was made from still holds the
same values."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn.modules import module as torch_module

from ..errors import SamInputError, describe

OFFICIAL_NAMES = ("vit_b", "vit_l", "vit_h", "default", "tiny")


def check_model(argument: str, model, whole: bool) -> None:
    """`model` must be an nn.Module (a Sam or one of its modules); with `whole`, a Sam (a module with an
    image_encoder). Else a SamInputError naming `argument`, with what to pass instead where it shows."""
    if isinstance(model, nn.Module) and (not whole or isinstance(getattr(model, "image_encoder", None), nn.Module)):
        return
    hint = ""
    if isinstance(model, str):
        if model in OFFICIAL_NAMES:
            hint = (f"Build it first: from_pretrained({model!r}) (sped up already) or "
                    f"sam_model_registry[{model!r}](checkpoint=path).")
        else:
            hint = f"Build it first: from_pretrained({model!r}) reads a checkpoint file (and gives it sped up)."
    elif isinstance(model, Mapping):
        hint = "That looks like a state dict: load it into a model first, sam_model_registry['vit_b'](checkpoint=path)."
    elif isinstance(getattr(model, "model", None), nn.Module):
        hint = ("That is a predictor: pass its model, predictor.model (speed_up changes it in place, so the "
                "predictor then uses it).")
    elif isinstance(getattr(getattr(model, "predictor", None), "model", None), nn.Module):
        hint = "That is a mask generator: pass its model, generator.predictor.model (speed_up changes it in place)."
    elif isinstance(model, nn.Module):
        hint = f"This {type(model).__name__} has no image_encoder: pass the whole Sam it belongs to."
    if whole:
        expected = "a SAM model (a Sam, e.g. from_pretrained('tiny'), whose image_encoder is compiled)"
    else:
        expected = "a SAM model or one of its modules (an nn.Module, e.g. from_pretrained('tiny'))"
    if isinstance(model, (str, bytes, int, float, type(None))):
        got = describe(model)
    elif isinstance(model, Mapping):
        got = f"{type(model).__name__} of {len(model)} entries"
    else:  # a module's or a predictor's repr is long, or many lines
        got = type(model).__name__
    raise SamInputError(f"{argument}: expected {expected}, got {got}." + (" " + hint if hint else ""))


OUR_CODE = ("torch.", "sam_from_scratch.modeling.", "sam_from_scratch.fast.")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")
MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def as_built(module: nn.Module) -> bool:
    """True when every module inside `module` runs as written here: each of torch's or this package's model
    classes (not a user's subclass, such as a LoRA linear layer), none with a forward set on the instance
    (notebook 06 swaps some), and no hooks. Where this holds, a fast path may multiply a module's weights
    itself instead of calling it; where not, the fast paths call the modules, so that what was changed runs."""
    if any(getattr(torch_module, name, None) for name in GLOBAL_HOOKS):
        return False
    for inner in module.modules():
        if not type(inner).__module__.startswith(OUR_CODE) or "forward" in vars(inner):
            return False
        if any(getattr(inner, name, None) for name in MODULE_HOOKS):
            return False
    return True


def eager_inference() -> bool:
    """No gradient recorded and no compiler, tracer or exporter watching: only then may a fast path keep a
    result between calls (a tracer would record it as a constant), write into a tensor it made, or call an
    operator that torch's exporters do not know."""
    return not (torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())


def same_values(kept: list[torch.Tensor], now: list[torch.Tensor]) -> bool:
    """Whether each tensor of `now` equals its copy in `kept`: shape, dtype, device and every value. Versions
    and addresses would not do: a fused optimizer step or a write through .data changes values and neither."""
    return len(kept) == len(now) and all(
        a.shape == b.shape and a.dtype == b.dtype and a.device == b.device and _equal(a, b) for a, b in zip(kept, now))


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.device.type != "cpu":
        return torch.equal(a, b)
    # on a CPU numpy compared 4 MiB in 0.14 ms on an idle 2-core machine, torch.equal in 0.33 ms (and 8 ms while
    # another process kept the second core busy); float32 NaNs never compare equal (what holds one is made
    # again), bfloat16 is compared bit for bit (the same bits give the same kept result)
    a, b = (t.detach().view(torch.int16) if t.dtype == torch.bfloat16 else t.detach() for t in (a, b))
    return bool(np.array_equal(a.numpy(), b.numpy()))
