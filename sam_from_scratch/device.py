"""Choosing where the model runs.

`auto_device()` is the one place the package and the notebooks decide on a device: CUDA if a GPU is
visible, then Apple's MPS, then the CPU. `auto_dtype()` decides on a precision: bfloat16 where the hardware
computes in it (a recent GPU, a CPU with AMX or AVX-512-BF16), float32 elsewhere.
"""

from __future__ import annotations

import os

import torch

from .errors import SamInputError, check_choice

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


# ---------------------------------------------------------------------------------------------------------
# Choosing the precision
# ---------------------------------------------------------------------------------------------------------
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ENVIRONMENT = "SAM_FROM_SCRATCH_DTYPE"  # overrides what "auto" picks, e.g. float32 for reproducible tests
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with bfloat16 matrix units


def cpu_bf16_flags() -> list[str]:
    """The bfloat16 units this CPU reports (AMX, AVX-512-BF16): [] on an AVX2-only CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return [flag for flag in CPU_BF16_FLAGS if flag in flags]
    except OSError:
        pass
    helpers = (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
    return [flag for flag, name in helpers if getattr(torch.cpu, name, lambda: False)()]


def auto_dtype(device: str | torch.device = "cpu") -> torch.dtype:
    """The precision that pays on `device`: bfloat16 on a GPU that computes in it (compute capability 8 or
    more) and on a CPU with AMX or AVX-512-BF16; float32 elsewhere (on an AVX2 CPU bfloat16 matrix products
    are converted to float32 and back, several times slower). The environment variable SAM_FROM_SCRATCH_DTYPE
    ("float32", "bfloat16", "float16" or "auto") overrides the choice."""
    forced = os.environ.get(DTYPE_ENVIRONMENT, "auto")
    if forced not in DTYPE_CHOICES:
        raise SamInputError(f"{DTYPE_ENVIRONMENT}: expected one of {', '.join(map(repr, DTYPE_CHOICES))}, got {forced!r}.")
    if forced != "auto":
        return getattr(torch, forced)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float32
    if device.type == "cpu" and cpu_bf16_flags():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(argument: str, dtype, device: str | torch.device) -> torch.dtype:
    """`dtype` as a torch.dtype: "auto" (see auto_dtype), a name of DTYPE_CHOICES, or a torch dtype."""
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise SamInputError(f"{argument}: expected 'auto', torch.float32, torch.bfloat16 or torch.float16, got {dtype!r}.")
        return dtype
    check_choice(argument, dtype, DTYPE_CHOICES)
    return auto_dtype(device) if dtype == "auto" else getattr(torch, dtype)
