"""Devices and precisions by name: what torch would refuse deep inside (or read as something else) is named at
the public call; a device that is not on this machine is refused whatever its spelling ("mps:0", a torch.device),
with what is available."""

from __future__ import annotations

import pytest
import torch

from sam_from_scratch import from_pretrained
from sam_from_scratch.device import DTYPE_ENVIRONMENT, auto_device, auto_dtype
from sam_from_scratch.errors import SamInputError

EXPECTED = r"device: expected 'auto', 'cuda', 'cuda:N' \(N a GPU's index\), 'mps', 'cpu', or a torch\.device, "
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
NO_MPS = pytest.mark.skipif(bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
                            reason="needs a machine without MPS")

BAD_NAMES = [
    ("cpu:x", r"got str 'cpu:x'\.$"),
    ("cuda:abc", r"got str 'cuda:abc'\.$"),
    ("auto:0", r"got str 'auto:0'\.$"),
    ("", r"got str ''\.$"),
    ("gpu", r"got str 'gpu'\. For an NVIDIA GPU: 'cuda' \(or 'cuda:N'\); for Apple's: 'mps'\.$"),
    ("CPU", r"got str 'CPU'\. Did you mean 'cpu'\?$"),
    (" cpu", r"got str ' cpu'\. Did you mean 'cpu'\?$"),
    ("bfloat16", r"got str 'bfloat16'\. That is a precision: pass it as dtype=\.\.\., not as the device\.$"),
    (torch.float32, r"got dtype torch\.float32\. That is a precision: pass it as dtype=\.\.\., not as the device\.$"),
    (0, r"got int 0\. For GPU 0: 'cuda:0'\.$"),
    (True, r"got bool True\.$"),
    (torch.device("meta"), r"got device device\(type='meta'\)\. The model runs on 'cpu', 'cuda' or 'mps', not on 'meta'\.$"),
]


@pytest.mark.parametrize("device, message", BAD_NAMES, ids=[repr(d) for d, _ in BAD_NAMES])
def test_a_device_torch_would_refuse_or_misread_is_named(device, message):
    with pytest.raises(SamInputError, match="^" + EXPECTED + message):
        auto_device(device)
    with pytest.raises(SamInputError, match="^" + EXPECTED + message):
        from_pretrained("tiny", device=device)


@pytest.mark.parametrize("device, message", BAD_NAMES, ids=[repr(d) for d, _ in BAD_NAMES])
def test_auto_dtype_names_a_device_it_cannot_read(device, message, monkeypatch):
    monkeypatch.delenv(DTYPE_ENVIRONMENT, raising=False)
    with pytest.raises(SamInputError, match="^" + EXPECTED + message):
        auto_dtype(device)


def test_auto_dtype_takes_what_auto_device_takes(monkeypatch):
    """"auto" and None are the device auto_device picks (as auto_device reads them); a device is asked what pays
    on it, not whether it is here (so "cuda" on a CPU machine is float32, not an error)."""
    monkeypatch.delenv(DTYPE_ENVIRONMENT, raising=False)
    picked = auto_dtype(auto_device())
    assert auto_dtype(None) == auto_dtype("auto") == picked
    assert auto_dtype(torch.device("cpu")) == auto_dtype("cpu:0") == auto_dtype("cpu")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert auto_dtype("cuda:1") == auto_dtype(torch.device("cuda")) == torch.float32


@NO_MPS
@pytest.mark.parametrize("device", ["mps", "mps:0", torch.device("mps"), torch.device("mps:0")], ids=repr)
def test_mps_is_refused_off_a_mac_whatever_its_spelling(device):
    asked = device if isinstance(device, str) else str(device)
    with pytest.raises(ValueError, match=rf"^device: '{asked}' was asked for but MPS is not available here; "
                                         r"available: \['cpu'(, 'cuda')?\]$"):
        from_pretrained("tiny", device=device)


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda"), torch.device("cuda:0")], ids=repr)
def test_cuda_is_refused_without_cuda_whatever_its_spelling(device):
    asked = device if isinstance(device, str) else str(device)
    with pytest.raises(ValueError, match=rf"^device: '{asked}' was asked for but CUDA is not available here"):
        from_pretrained("tiny", device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_index_beyond_this_machines_is_refused():
    count = torch.cuda.device_count()
    for device in (f"cuda:{count}", torch.device("cuda", count)):
        with pytest.raises(ValueError, match=rf"^device: 'cuda:{count}' was asked for but this machine has {count} "
                                             rf"CUDA device\(s\), cuda:0 to cuda:{count - 1}"):
            auto_device(device)
    assert auto_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)


def test_good_names_are_taken():
    assert auto_device("cpu") == torch.device("cpu")
    assert auto_device("cpu:0") == torch.device("cpu:0")
    assert auto_device(torch.device("cpu")) == torch.device("cpu")
    assert auto_device(None) == auto_device("auto")
