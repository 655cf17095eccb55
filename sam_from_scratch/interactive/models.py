"""Which model the widgets and the command line use when none is named, and how to say which one it is.

Without a name, the best model available here without a download: Meta's vit_b when its checkpoint is in the
cache (``python -m sam_from_scratch download vit_b``), otherwise the small model trained for this course,
which ships with the package. torch is imported only when a model is loaded.
"""

from __future__ import annotations

__all__ = ["default_model_name", "describe_model", "load_model", "load_predictor"]


def default_model_name() -> str:
    """"vit_b" when Meta's vit_b checkpoint is in the cache (no network, no hash check), else "tiny"."""
    from ..download import find_checkpoint

    return "vit_b" if find_checkpoint("vit_b") is not None else "tiny"


def load_model(model=None, device="auto"):
    """A ``Sam``: `model` itself if it is one, a name for ``from_pretrained`` ("tiny", "vit_b", a checkpoint
    path, ...), or None for :func:`default_model_name`'s model."""
    from ..build import from_pretrained

    if model is None:
        model = default_model_name()
    if isinstance(model, str):
        return from_pretrained(model, device=device)
    return model


def load_predictor(model=None, device="auto", dtype="auto"):
    """A ``SamPredictor`` for :func:`load_model`'s model, its encoder in `dtype` (see ``SamPredictor``)."""
    from ..predictor import SamPredictor

    return SamPredictor(load_model(model, device), dtype=dtype)


def describe_model(model) -> str:
    """'SAM vit_b', 'the small course model (tiny)' or 'a custom SAM (...)', from the shapes of `model`."""
    from ..config import guess_variant

    name = guess_variant(model.state_dict())
    if name is None:
        return f"a custom SAM ({model.image_encoder.img_size} px input)"
    return "the small course model (tiny)" if name == "tiny" else f"SAM {name}"

