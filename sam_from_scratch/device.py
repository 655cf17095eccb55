"""Choosing where the model runs.

`auto_device()` is the one place the package and the notebooks decide on a device: CUDA if a GPU is
visible, then Apple's MPS, then the CPU. `auto_dtype()` decides on a precision: bfloat16 where the hardware
computes in it (a recent GPU, a CPU with AMX or AVX-512-BF16), float32 elsewhere.
"""

from __future__ import annotations

import functools
import os
import re

import torch

from .errors import SamInputError, check_choice, input_error

DEVICE_NAME = re.compile(r"(auto|cpu|mps|cuda)(?::(\d+))?")  # "cuda:1"; torch takes an index after cpu and mps too
DEVICE_EXPECTED = "'auto', 'cuda', 'cuda:N' (N a GPU's index), 'mps', 'cpu', or a torch.device"


def parse_device(argument: str, preferred) -> torch.device | None:
    """`preferred` as a torch.device without asking whether it is there (None for "auto" or None), else a
    SamInputError naming `argument`: the name torch would refuse deep inside (or read as something else, such as
    an integer for a CUDA index) is named here, with a hint where a likely mistake shows."""
    if preferred is None:
        return None
    if isinstance(preferred, torch.device):
        if preferred.type not in ("cpu", "cuda", "mps"):  # e.g. "meta": tensors without values, masks of nothing
            raise input_error(argument, DEVICE_EXPECTED, preferred,
                              f"The model runs on 'cpu', 'cuda' or 'mps', not on {preferred.type!r}.")
        return preferred
    if isinstance(preferred, str):
        if _is_device_name(preferred):
            return None if preferred == "auto" else torch.device(preferred)
        text, hint = preferred.strip().lower(), ""
        if _is_device_name(text):
            hint = f"Did you mean {text!r}?"
        elif "gpu" in text:
            hint = "For an NVIDIA GPU: 'cuda' (or 'cuda:N'); for Apple's: 'mps'."
        elif text.removeprefix("torch.") in ("float32", "float16", "bfloat16", "half", "float", "fp16", "bf16"):
            hint = "That is a precision: pass it as dtype=..., not as the device."
        raise input_error(argument, DEVICE_EXPECTED, preferred, hint)
    hint = ""
    if isinstance(preferred, torch.dtype):
        hint = "That is a precision: pass it as dtype=..., not as the device."
    elif isinstance(preferred, int) and not isinstance(preferred, bool):
        hint = f"For GPU {preferred}: 'cuda:{preferred}'."
    raise input_error(argument, DEVICE_EXPECTED, preferred, hint)


def _is_device_name(text: str) -> bool:
    match = DEVICE_NAME.fullmatch(text)
    return bool(match) and not (match.group(1) == "auto" and match.group(2))  # "auto:0" is nothing


def auto_device(preferred: str | torch.device | None = "auto") -> torch.device:
    """Return a torch.device for `preferred` ("auto", "cuda", "cuda:1", "mps", "cpu" or a torch.device).

    "auto" (or None) picks cuda, then mps, then cpu. A name torch does not take raises SamInputError; asking for
    a device that is not available (a string or a torch.device: "cuda", "cuda:3" on a machine with one GPU,
    "mps:0" off a Mac) raises a SamInputError (a ValueError) that says what is available.
    """
    device = parse_device("device", preferred)
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    asked = preferred if isinstance(preferred, str) else str(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SamInputError(f"device: '{asked}' was asked for but CUDA is not available here; available: {available_devices()}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise SamInputError(f"device: '{asked}' was asked for but this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}; available: {available_devices()}")
    if device.type == "mps" and not _mps_available():
        raise SamInputError(f"device: '{asked}' was asked for but MPS is not available here; available: {available_devices()}")
    return device


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


@torch.compiler.assume_constant_result  # torch.compile takes the answer as it is, without tracing the read
def cpu_has_amx() -> bool:
    """True on a CPU with AMX's bfloat16 tiles (Intel Sapphire Rapids and later), read once."""
    return _read_cpu_has_amx()


@functools.cache
def _read_cpu_has_amx() -> bool:
    return "amx_bf16" in cpu_bf16_flags()


def auto_dtype(device: str | torch.device | None = "cpu") -> torch.dtype:
    """The precision that pays on `device`: bfloat16 on a GPU that computes in it (compute capability 8 or
    more) and on a CPU with AMX or AVX-512-BF16; float32 elsewhere (on an AVX2 CPU bfloat16 matrix products
    are converted to float32 and back, several times slower). The environment variable SAM_FROM_SCRATCH_DTYPE
    ("float32", "bfloat16", "float16" or "auto"; empty counts as unset) overrides the choice.

    `device` is what auto_device takes: "cpu", "cuda", "cuda:N", "mps" or a torch.device (whether it is there
    is not asked: this says what would pay on it), and "auto" or None for the device auto_device picks. Anything
    else, such as "gpu", a dtype (torch.float32, "bfloat16": this function returns one) or an integer, raises a
    SamInputError naming `device`."""
    chosen = parse_device("device", device)
    device = auto_device() if chosen is None else chosen
    forced = os.environ.get(DTYPE_ENVIRONMENT) or "auto"  # set but empty (`export VAR=`) counts as unset
    if forced not in DTYPE_CHOICES:
        raise SamInputError(f"{DTYPE_ENVIRONMENT}: expected one of {', '.join(map(repr, DTYPE_CHOICES))}, got {forced!r}.")
    if forced != "auto":
        return getattr(torch, forced)
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
