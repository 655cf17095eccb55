"""Choosing where the model runs.

`auto_device()` is the one place the package and the notebooks decide on a device: CUDA if a GPU is
visible, then Apple's MPS, then the CPU.
"""

from __future__ import annotations

import torch

from .errors import check_choice

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def auto_device(preferred: str | torch.device | None = "auto") -> torch.device:
    """Return a torch.device for `preferred` ("auto", "cuda", "cuda:1", "mps", "cpu" or a torch.device).

    "auto" (or None) picks cuda, then mps, then cpu. Asking for a device that is not available raises a
    ValueError that says what is available.
    """
    if isinstance(preferred, torch.device):
        return preferred
    if preferred is None or preferred == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not isinstance(preferred, str):
        raise TypeError(f"device: expected a string such as 'auto' or 'cpu', or a torch.device; got {type(preferred).__name__}")
    check_choice("device", preferred.split(":")[0], DEVICE_CHOICES)
    if preferred.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: '{preferred}' was asked for but CUDA is not available here; available: {available_devices()}")
    if preferred == "mps" and not _mps_available():
        raise ValueError(f"device: 'mps' was asked for but MPS is not available here; available: {available_devices()}")
    return torch.device(preferred)


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names.insert(0, "cuda")
    if _mps_available():
        names.insert(0, "mps")
    return names


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
