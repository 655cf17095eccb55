"""What the fast paths' public functions check: a model (not a name, weights or a predictor) and their switches."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

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
        hint = ("That is a predictor: pass its model, predictor.model (changed in place, so the predictor then "
                "uses it).")
    elif isinstance(getattr(getattr(model, "predictor", None), "model", None), nn.Module):
        hint = "That is a mask generator: pass its model, generator.predictor.model (changed in place)."
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
