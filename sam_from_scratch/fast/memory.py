"""Keeping freed memory in the process: the CPU's big tensors are then not page-faulted in afresh each time.

glibc's malloc serves every allocation above a threshold (128 KiB at first, adapting up to 32 MiB) with a
fresh mmap and gives it back to the system when it is freed; the heap's free top is given back too. A
(4096, 256) tensor of the decoder is 4 MiB, an attention chunk of the encoder 128 MiB: each time one is
allocated again, the kernel maps and zeroes its pages one fault at a time, and on a small virtual machine
that costs as much as the arithmetic. Measured on 2 cores (AMD EPYC, vit_b): an encoder pass 8.0 s -> 7.2 s,
a click 46 -> 33 ms.

keep_freed_memory() asks malloc (mallopt) to serve large blocks from the heap and never to trim it, so that
freed pages stay mapped and are reused. The process then keeps its peak memory (for the vit_b encoder, about
140 MiB more than it would keep anyway). It is a setting of the whole process, made once; SamPredictor makes
it on a CPU. Set SAM_FROM_SCRATCH_KEEP_FREED_MEMORY=0 to leave malloc as it is. Other C libraries (macOS,
Windows, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_MAX = -4
ENV = "SAM_FROM_SCRATCH_KEEP_FREED_MEMORY"
_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (once per process); True when that is in effect."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off") and _is_glibc():
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                # no mmap for large blocks: they come from the heap; and the heap's free top is never trimmed
                _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
            except (OSError, AttributeError):
                _applied = False
    return _applied


def _is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
