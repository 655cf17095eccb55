"""Sam.forward, the official batched call: every bad record is named by its place in batched_input.

Without these checks an image that was not resized was cropped by the padding without a word, a label of 2
(a box corner's code) or a NaN point gave a mask, and the rest failed deep inside torch.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from sam_from_scratch import CONFIGS, build_sam
from sam_from_scratch.errors import SamInputError

SIZE = CONFIGS["tiny"].image_size  # 96: the resized image's long side
LOW = CONFIGS["tiny"].image_embedding_size * 4  # the mask logits' side


@pytest.fixture(scope="module")
def sam():
    torch.manual_seed(0)
    return build_sam(CONFIGS["tiny"], fast=False)


def record(**changes):
    """A good record for a 150 x 225 photo (resized to 64 x 96) with one click; `changes` spoil it."""
    good = {
        "image": torch.full((3, 64, SIZE), 100.0),
        "original_size": (150, 225),
        "point_coords": torch.tensor([[[40.0, 30.0]]]),
        "point_labels": torch.tensor([[1]]),
    }
    return {key: value for key, value in (good | changes).items() if value is not None}


def test_a_good_batch_runs(sam):
    outputs = sam([record(), record(boxes=torch.tensor([[5.0, 5.0, 60.0, 40.0]]))], multimask_output=True)
    assert [tuple(o["masks"].shape) for o in outputs] == [(1, 3, 150, 225)] * 2


GOOD = {  # what the official Sam.forward takes, and so must ours
    "extra keys of the user's": record(image_id=7, gt_masks=torch.zeros(1, 150, 225)),
    "uint8 pixels": record(image=torch.full((3, 64, SIZE), 100, dtype=torch.uint8)),
    "a bicubic resize that overshoots 0..255": record(image=torch.linspace(-30.0, 290.0, 3 * 64 * SIZE).reshape(3, 64, SIZE)),
    "a resize that rounds the other way": record(image=torch.full((3, 65, SIZE), 100.0)),
    "a stretched, square resize": record(image=torch.full((3, SIZE, SIZE), 100.0)),
    "numpy integers as the size": record(original_size=np.array([150, 225])),
    "a point on the image's edge": record(point_coords=torch.tensor([[[float(SIZE), 64.0]]])),
}


@pytest.mark.parametrize("case", GOOD)
def test_what_the_official_call_takes_passes(sam, case):
    output = sam([GOOD[case]], multimask_output=False)[0]
    assert output["masks"].shape[-2:] == (150, 225)


CASES = {
    "an image that was not resized": ([record(image=torch.zeros(3, 400, 600))],
                                      r"^batched_input\[0\]\['image'\]: expected shape \(3, h, w\) with max\(h, w\) == 96"),
    "channels last": ([record(image=torch.zeros(64, SIZE, 3))], r"It looks channels-last: use \.permute\(2, 0, 1\)"),
    "a numpy image": ([record(image=np.zeros((3, 64, SIZE)))],
                      r"^batched_input\[0\]\['image'\]: expected a torch\.Tensor of shape \(3, h, w\), got ndarray"),
    "pixels in [0, 1]": ([record(image=torch.full((3, 64, SIZE), 0.4))], r"multiply by 255"),
    "no original size": ([record(original_size=None)], r"^batched_input\[0\]: expected the key 'original_size'"),
    "original size as (W, H)": ([record(original_size=(225, 150))],
                                r"^batched_input\[0\]\['original_size'\]: expected the size of the image before ResizeLongestSide"),
    "label 2": ([record(), record(point_labels=torch.tensor([[2]]))],
                r"^batched_input\[1\]\['point_labels'\]: expected values in \{-1, 0, 1\}"),
    "a NaN point": ([record(point_coords=torch.tensor([[[float("nan"), 3.0]]]))],
                    r"^batched_input\[0\]\['point_coords'\]: expected finite numbers"),
    "points without a batch axis": ([record(point_coords=torch.tensor([[40.0, 30.0]]))],
                                    r"^batched_input\[0\]\['point_coords'\]: expected a tensor of shape \(B, N, 2\)"),
    "labels missing": ([record(point_labels=None)], r"^batched_input\[0\]\['point_labels'\]: expected a tensor of shape \(1, 1\)"),
    "mask logits of another size": ([record(mask_inputs=torch.zeros(1, 1, LOW + 1, LOW + 1))],
                                    rf"^batched_input\[0\]\['mask_inputs'\]: expected a floating-point tensor of shape \(B, 1, {LOW}, {LOW}\)"),
    "box for boxes": ([record(box=torch.tensor([[1.0, 2.0, 3.0, 4.0]]))],
                      r"^batched_input\[0\]: got the key 'box', which SAM does not read; did you mean 'boxes'\?"),
    "a misspelt key": ([record(mask_input=torch.zeros(1, 1, LOW, LOW))], r"did you mean 'mask_inputs'\?"),
    "a NaN original size": ([record(original_size=(float("nan"), 225))],
                            r"^batched_input\[0\]\['original_size'\]: expected \(H, W\), two positive integers"),
    "one dict, not a list": (record(), r"^batched_input: expected a non-empty list of dicts.*Wrap a single image's dict in a list"),
    "an empty list": ([], r"^batched_input: expected a non-empty list of dicts, one per image, got list \[\]"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_named_by_its_place(sam, case):
    batched_input, pattern = CASES[case]
    with pytest.raises(SamInputError) as error:
        sam(batched_input, multimask_output=True)
    assert re.search(pattern, str(error.value)), str(error.value)


def test_multimask_output_must_be_true_or_false(sam):
    with pytest.raises(SamInputError, match=r"^multimask_output: expected True or False, got str 'False'"):
        sam([record()], multimask_output="False")
