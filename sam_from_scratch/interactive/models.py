"""Which model the widgets and the command line use when none is named, and how to say which one it is.

Without a name, the best model available here without a download: Meta's vit_b when its checkpoint is in the
cache (``python -m sam_from_scratch download vit_b``), otherwise the small model trained for this course,
which ships with the package. torch is imported only when a model is loaded.
"""

from __future__ import annotations

import os

from ..errors import SamInputError, input_error, renamed

__all__ = ["check_methods", "describe_model", "load_default_model", "load_model", "load_predictor"]


def load_default_model(device="auto", cache_dir=None, warn=None):
    """The best model here without a download: the cached vit_b file, read as it is (no hash check, so no
    download to replace it), or the small model when there is none or it does not load (damaged, or not a
    SAM checkpoint); `warn(message)` is told why then (default: a UserWarning at the user's line)."""
    from ..build import from_pretrained
    from ..checkpoint import CheckpointError
    from ..device import auto_device
    from ..download import find_checkpoint

    auto_device(device)  # a bad device is the caller's to hear about, not a reason to change models
    checkpoint = find_checkpoint("vit_b", cache_dir)
    if checkpoint is not None:
        try:
            return from_pretrained(str(checkpoint), device=device)
        except (CheckpointError, SamInputError) as error:
            message = f"could not load Meta's vit_b from {checkpoint} ({error}); using the bundled small model instead"
            (warn or _warn_at_users_line)(message)
    return from_pretrained("tiny", device=device)


def _warn_at_users_line(message: str) -> None:
    """A UserWarning attributed to the first line outside this package (the user's call of a widget)."""
    import sys
    import warnings

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 2  # level 2: this function's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def load_model(model=None, device="auto"):
    """A ``Sam``: `model` itself if it is one, a name for ``from_pretrained`` ("tiny", "vit_b", a checkpoint
    path, ...), or None for the best model here without a download (:func:`load_default_model`). A bad one is a
    ``SamInputError`` naming `model`."""
    from ..build import from_pretrained
    from ..predictor import check_sam_model

    if model is None:
        return load_default_model(device)
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

