"""The fast paths' public functions name what they cannot speed up (a name, a state dict, a predictor) instead
of an AttributeError from inside, and take only True or False as switches (a string such as "no" is truthy)."""

from __future__ import annotations

import pytest
import torch

from sam_from_scratch import SamAutomaticMaskGenerator, SamPredictor
from sam_from_scratch.build import build_sam
from sam_from_scratch.build_sam import build_sam as official_build_sam
from sam_from_scratch.config import CONFIGS
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.fast import compile_image_encoder, is_fast, speed_up

ANY_MODULE = r"^model: expected a SAM model or one of its modules \(an nn\.Module, e\.g\. from_pretrained\('tiny'\)\), "
A_SAM = r"^model: expected a SAM model \(a Sam, e\.g\. from_pretrained\('tiny'\), whose image_encoder is compiled\), "


@pytest.fixture(scope="module")
def plain():
    return build_sam(CONFIGS["tiny"], fast=False)


def not_models(plain):
    return {
        "a name": ("tiny", r"got str 'tiny'\. Build it first: from_pretrained\('tiny'\) \(sped up already\) or "
                           r"sam_model_registry\['tiny'\]\(checkpoint=path\)\.$"),
        "a path": ("my_sam.pth", r"got str 'my_sam\.pth'\. Build it first: from_pretrained\('my_sam\.pth'\) reads a "
                                 r"checkpoint file"),
        "a state dict": (plain.state_dict(), r"got OrderedDict of \d+ entries\. That looks like a state dict: load it "
                                             r"into a model first"),
        "a predictor": (SamPredictor(plain), r"got SamPredictor\. That is a predictor: pass its model, "
                                             r"predictor\.model \(speed_up changes it in place, so the predictor then uses it\)\.$"),
        "a generator": (SamAutomaticMaskGenerator(plain, points_per_side=2),
                        r"got SamAutomaticMaskGenerator\. That is a mask generator: pass its model, "
                        r"generator\.predictor\.model"),
        "None": (None, r"got NoneType None\.$"),
    }


@pytest.mark.parametrize("what", ["a name", "a path", "a state dict", "a predictor", "a generator", "None"])
def test_what_is_not_a_model_is_named_with_what_to_pass(plain, what):
    value, message = not_models(plain)[what]
    for call in (speed_up, is_fast):
        with pytest.raises(SamInputError, match=ANY_MODULE + message):
            call(value)
    with pytest.raises(SamInputError, match=A_SAM + message):
        compile_image_encoder(value)
    assert not is_fast(plain)  # the model behind the predictor or generator was not touched


def test_compiling_needs_a_whole_sam(plain):
    with pytest.raises(SamInputError, match=A_SAM + r"got ImageEncoderViT\. This ImageEncoderViT has no "
                                                   r"image_encoder: pass the whole Sam it belongs to\.$"):
        compile_image_encoder(plain.image_encoder)
    block = plain.image_encoder.blocks[0]
    with pytest.raises(SamInputError, match=A_SAM + r"got Block\."):
        speed_up(block, compile=True)
    assert not is_fast(block)  # refused before anything was swapped


@pytest.mark.parametrize("kwargs, refusal", [
    ({"mode": "fastest"}, r"Unrecognized mode=fastest"),
    ({"fullgrph": True}, r"unexpected keyword argument 'fullgrph'"),
    ({"backend": "no-such-backend"}, r"no-such-backend"),
])
def test_compile_arguments_that_torch_refuses_are_named(plain, kwargs, refusal):
    """torch.compile checks its arguments before compiling anything: its refusal is raised at our API,
    naming the argument and what arrived, and the encoder stays as it was (eager, not half compiled)."""
    import copy

    model = copy.deepcopy(plain)
    with pytest.raises(SamInputError, match=rf"^compile_kwargs: expected arguments of torch\.compile, got "
                                            rf"\{{'{next(iter(kwargs))}': .*which it refused: .*{refusal}"):
        compile_image_encoder(model, **kwargs)
    assert model.image_encoder._compiled_call_impl is None and not hasattr(model.image_encoder, "compile_failed")


def test_a_module_of_sam_is_still_sped_up_alone(plain):
    """As notebooks 12 and A3 do: speed_up(block) swaps the block's attention, and is_fast answers for it."""
    import copy

    block = copy.deepcopy(plain.image_encoder.blocks[0])
    assert not is_fast(block) and speed_up(block) is block and is_fast(block)


@pytest.mark.parametrize("value", ["no", "False", None, 0.5, 2])
def test_switches_take_only_true_or_false(plain, value):
    with pytest.raises(SamInputError, match=rf"^compile: expected True or False, got {type(value).__name__} "):
        speed_up(plain, compile=value)
    assert not is_fast(plain)  # refused before anything was swapped
    with pytest.raises(SamInputError, match=rf"^fast: expected True or False, got {type(value).__name__} "):
        build_sam(CONFIGS["tiny"], fast=value)
    with pytest.raises(SamInputError, match=rf"^fast: expected True or False, got {type(value).__name__} "):
        official_build_sam(CONFIGS["tiny"], fast=value)


def test_numpy_booleans_and_0_1_are_switches_too():
    import numpy as np

    assert not is_fast(build_sam(CONFIGS["tiny"], fast=np.False_))
    assert is_fast(build_sam(CONFIGS["tiny"], fast=1))
    model = build_sam(CONFIGS["tiny"], fast=0)
    assert speed_up(model, compile=np.False_) is model and is_fast(model)
    assert speed_up(model, torch.float32, compile=0) is model


def test_the_official_model_is_refused_with_how_to_load_its_weights_into_ours():
    from segment_anything import sam_model_registry as official_registry

    official = official_registry["vit_b"]()
    with pytest.raises(SamInputError, match=r"^model: expected a model of this package, got the official "
                                            r"segment_anything Sam, .* "
                                            r"sam_model_registry\['vit_b'\]\(checkpoint=path\)"):
        speed_up(official, torch.bfloat16)
    assert official.image_encoder.patch_embed.proj.weight.dtype == torch.float32  # refused before converting
    with pytest.raises(SamInputError, match=r"^model: expected a model of this package, got the official "):
        speed_up(official)  # without a dtype too: it would change nothing and is_fast would say True
    assert not is_fast(official)


def test_a_dtype_may_be_given_by_name_as_the_message_says():
    model = build_sam(CONFIGS["tiny"], fast=False)
    assert speed_up(model, "bfloat16").mask_decoder.iou_token.weight.dtype == torch.bfloat16
    with pytest.raises(SamInputError, match=r"^dtype: expected torch\.float32, torch\.bfloat16 or torch\.float16 "
                                            r"\(or their names\), got 'bf16'\.$"):
        speed_up(model, "bf16")
