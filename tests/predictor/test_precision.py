"""dtype="auto": the predictor, the mask generator, the command line and the widgets run the image encoder in
bfloat16 where the hardware computes in it, and in float32 elsewhere, without changing the user's model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam_from_scratch import SamAutomaticMaskGenerator, SamPredictor, from_pretrained
from sam_from_scratch import device as device_module
from sam_from_scratch.device import CPU_BF16_FLAGS, DTYPE_CHOICES, DTYPE_ENVIRONMENT, auto_dtype, cpu_bf16_flags
from sam_from_scratch.errors import SamInputError


@pytest.fixture(scope="module")
def tiny():
    return from_pretrained("tiny", device="cpu")


@pytest.fixture
def no_override(monkeypatch):
    monkeypatch.delenv(DTYPE_ENVIRONMENT, raising=False)


def test_cpu_flags_are_those_of_proc_cpuinfo():
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.findall(r"^flags\s*:(.*)$", text, re.M)[0].split()) if "flags" in text else set()
    found = cpu_bf16_flags()
    assert set(found) <= set(CPU_BF16_FLAGS)
    if text:
        assert found == [flag for flag in CPU_BF16_FLAGS if flag in flags]


@pytest.mark.parametrize("flags, expected", [([], torch.float32), (["avx512_bf16"], torch.bfloat16),
                                             (["amx_bf16", "avx512_bf16"], torch.bfloat16)])
def test_auto_picks_bfloat16_only_on_a_cpu_with_bfloat16_units(monkeypatch, no_override, flags, expected):
    monkeypatch.setattr(device_module, "cpu_bf16_flags", lambda: flags)
    assert auto_dtype("cpu") == expected


def test_auto_on_cuda_follows_the_gpu(monkeypatch, no_override):
    for supported, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, s=supported: s)
        assert auto_dtype("cuda") == expected


def test_the_environment_overrides_auto_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_bf16_flags", lambda: ["amx_bf16"])
    monkeypatch.setenv(DTYPE_ENVIRONMENT, "float32")
    assert auto_dtype("cpu") == torch.float32
    monkeypatch.setenv(DTYPE_ENVIRONMENT, "")  # cleared with `export SAM_FROM_SCRATCH_DTYPE=`: as if unset
    assert auto_dtype("cpu") == torch.bfloat16
    monkeypatch.setenv(DTYPE_ENVIRONMENT, "half")
    with pytest.raises(SamInputError, match=f"{DTYPE_ENVIRONMENT}: expected one of .*got 'half'"):
        auto_dtype("cpu")


@pytest.mark.parametrize("bad", ["half", "fp32", torch.int8, 16])
def test_a_bad_dtype_is_named_at_construction(tiny, bad):
    with pytest.raises(SamInputError, match=r"^dtype: expected"):
        SamPredictor(tiny, dtype=bad)
    with pytest.raises(SamInputError, match=r"^dtype: expected"):
        SamAutomaticMaskGenerator(tiny, dtype=bad)


def test_bfloat16_encoder_leaves_the_model_alone_and_keeps_the_embedding(tiny):
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    exact, half = SamPredictor(tiny, dtype="float32"), SamPredictor(tiny, dtype=torch.bfloat16)
    assert (exact.dtype, half.dtype) == (torch.float32, torch.bfloat16)
    exact.set_image(image)
    half.set_image(image)
    assert half.features.dtype == torch.float32  # the decoder gets the model's own precision
    cosine = F.cosine_similarity(half.features.flatten(), exact.features.flatten(), dim=0).item()
    assert 0.999 <= cosine and not torch.equal(half.features, exact.features)  # it did run in bfloat16
    after = tiny.state_dict()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    masks, _, _ = half.predict(point_coords=np.array([[60, 40]]), point_labels=np.array([1]))
    assert masks.shape == (3, 96, 128)


def test_auto_on_this_machine_and_under_the_override(tiny, monkeypatch, no_override):
    assert SamPredictor(tiny).dtype == auto_dtype("cpu")
    monkeypatch.setenv(DTYPE_ENVIRONMENT, "float32")
    assert SamPredictor(tiny).dtype == torch.float32
    assert SamAutomaticMaskGenerator(tiny, dtype="bfloat16").predictor.dtype == torch.bfloat16


def test_a_converted_model_runs_in_its_own_precision():
    model = from_pretrained("tiny", device="cpu", dtype=torch.bfloat16)
    assert SamPredictor(model, dtype="float32").dtype == torch.bfloat16


def test_the_command_line_offers_the_same_choices():
    from sam_from_scratch.cli import DTYPE_CHOICES as CLI_CHOICES

    assert CLI_CHOICES == DTYPE_CHOICES
