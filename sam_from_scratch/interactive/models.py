"""Which model the widgets and the command line use when none is named, and how to say which one it is.

Without a name, the best model available here without a download: Meta's vit_b when its checkpoint is in the
cache (``python -m sam_from_scratch download vit_b``), otherwise the small model trained for this course,
which ships with the package. torch is imported only when a model is loaded.
"""

from __future__ import annotations

import os

from ..errors import SamInputError, input_error, renamed

__all__ = ["check_methods", "default_model_name", "describe_model", "load_model", "load_predictor"]


def default_model_name() -> str:
    """"vit_b" when Meta's vit_b checkpoint is in the cache (no network, no hash check), else "tiny"."""
    from ..download import find_checkpoint

    return "vit_b" if find_checkpoint("vit_b") is not None else "tiny"


def load_model(model=None, device="auto"):
    """A ``Sam``: `model` itself if it is one, a name for ``from_pretrained`` ("tiny", "vit_b", a checkpoint
    path, ...), or None for :func:`default_model_name`'s model. A bad one is a ``SamInputError`` naming `model`."""
    from ..build import from_pretrained
    from ..predictor import check_sam_model

    if model is None:
        model = default_model_name()
    if not isinstance(model, (str, os.PathLike)):
        check_sam_model("model", model)
        return model
    try:
        return from_pretrained(model, device=device)
    except SamInputError as error:  # from_pretrained names its own argument, `name`; here it is `model`
        raise renamed(error, {"name": "model"}) from None


def load_predictor(model=None, device="auto", dtype="auto"):
    """A ``SamPredictor`` for :func:`load_model`'s model, its encoder in `dtype` (see ``SamPredictor``)."""
    from ..predictor import SamPredictor

    return SamPredictor(load_model(model, device), dtype=dtype)


def check_methods(argument: str, value, methods: tuple[str, ...], expected: str) -> None:
    """`value` must have each of `methods`, e.g. a predictor's set_image and predict. A SAM model or a model
    name given here instead is told to go to ``model=``."""
    if all(callable(getattr(value, method, None)) for method in methods):
        return
    if isinstance(value, str) or hasattr(value, "image_encoder"):
        got = repr(value) if isinstance(value, str) else f"a SAM model ({type(value).__name__})"
        raise SamInputError(f"{argument}: expected {expected}, got {got}. Pass the model as model=... instead.")
    raise input_error(argument, expected, value)


def describe_model(model) -> str:
    """'SAM vit_b', 'the small course model (tiny)' or 'a custom SAM (...)', from the shapes of `model`."""
    from ..config import guess_variant

    name = guess_variant(model.state_dict())
    if name is None:
        return f"a custom SAM ({model.image_encoder.img_size} px input)"
    return "the small course model (tiny)" if name == "tiny" else f"SAM {name}"

