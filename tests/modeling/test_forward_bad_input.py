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
from sam_from_scratch.utils.transforms import ResizeLongestSide

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
    "the far corner mapped by apply_coords_torch": record(
        point_coords=ResizeLongestSide(SIZE).apply_coords_torch(torch.tensor([[[225.0, 150.0]]]), (150, 225))),
    "the last row where the resize rounded down (63 rows, not 64)": record(
        image=torch.full((3, 63, SIZE), 100.0), point_coords=torch.tensor([[[40.0, 64.0]]])),
    "a padding point (label -1) anywhere": record(point_coords=torch.tensor([[[40.0, 30.0], [900.0, -50.0]]]),
                                                  point_labels=torch.tensor([[1, -1]])),
    "a box partly outside the image": record(boxes=torch.tensor([[50.0, 30.0, 200.0, 150.0]])),
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
    "a float64 box beyond float32": ([record(boxes=torch.tensor([[0.0, 0.0, 1e300, 1e300]], dtype=torch.float64))],
                                     r"^batched_input\[0\]\['boxes'\]: expected finite numbers \(no NaN or inf in float32\)"),
    "a float64 point beyond float32": ([record(point_coords=torch.tensor([[[1e300, 3.0]]], dtype=torch.float64))],
                                       r"^batched_input\[0\]\['point_coords'\]: expected finite numbers \(no NaN or inf in float32\)"),
    "a 0/1 mask in floats": ([record(mask_inputs=torch.ones(1, 1, LOW, LOW))],
                             r"^batched_input\[0\]\['mask_inputs'\]: expected low-resolution mask logits, .*only 0s and 1s"),
    "mask logits of 1e25": ([record(mask_inputs=torch.full((1, 1, LOW, LOW), 1e25))],
                            r"^batched_input\[0\]\['mask_inputs'\]: expected mask logits within \+-10000"),
    "16-bit integer pixels": ([record(image=torch.full((3, 64, SIZE), 1000, dtype=torch.int32))],
                              r"^batched_input\[0\]\['image'\]: expected values 0\.\.255, .*Its values reach 1000: 16-bit\?"),
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
    "a point in the original image's pixels": (
        [record(point_coords=torch.tensor([[[40.0, 30.0]], [[200.0, 120.0]]]), point_labels=torch.tensor([[1], [1]]))],
        r"^batched_input\[0\]\['point_coords'\]: expected points \(x, y\) in the resized frame \(0 <= x <= 96, "
        r"0 <= y <= 64: the image as the model sees it\), got 1 outside, e\.g\. \[200\.0, 120\.0\]\. Are they in the "
        r"original image's pixels\? Map them with ResizeLongestSide\(96\)\.apply_coords_torch\(coords, original_size\)\.$"),
    "a point left of the image": ([record(point_coords=torch.tensor([[[-3.0, 30.0]]]))],
                                  r"^batched_input\[0\]\['point_coords'\]: expected points \(x, y\) in the resized frame"),
    "a box in the original image's pixels": (
        [record(boxes=torch.tensor([[120.0, 70.0, 220.0, 140.0]]))],
        r"^batched_input\[0\]\['boxes'\]: expected boxes that overlap the resized frame \(0 <= x <= 96, 0 <= y <= 64: "
        r"the image as the model sees it\), got 1 outside it, e\.g\. \[120\.0, 70\.0, 220\.0, 140\.0\]\. .*"
        r"ResizeLongestSide\(96\)\.apply_boxes_torch\(boxes, original_size\)"),
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


@pytest.mark.parametrize("key, meant", [
    ("input_points", "point_coords"), ("input_labels", "point_labels"), ("input_boxes", "boxes"),
    ("points", "point_coords"), ("point", "point_coords"), ("labels", "point_labels"), ("label", "point_labels"),
    ("box", "boxes"), ("bbox", "boxes"), ("mask", "mask_inputs"), ("masks", "mask_inputs"),
    ("mask_input", "mask_inputs"),
])
def test_prompt_like_keys_the_model_would_ignore_are_refused(sam, key, meant):
    # Without this, Hugging Face's input_points or a 'bbox' gave the masks of no prompt at all.
    with pytest.raises(SamInputError) as error:
        sam([record(**{key: torch.zeros(1, 1, 2)})], multimask_output=False)
    message = str(error.value)
    assert message.startswith(f"batched_input[0]: got the key {key!r}, which SAM does not read; did you mean {meant!r}?")
    assert ("Hugging Face" in message) == key.startswith("input_")


def test_a_prompt_given_as_none_counts_as_absent(sam):
    # As predict_torch takes None for no points: the model's prompt encoder failed on None before.
    nothing = dict(point_coords=None, point_labels=None, boxes=None, mask_inputs=None)
    bare = record(point_coords=None, point_labels=None)
    box = torch.tensor([[5.0, 5.0, 60.0, 40.0]])
    outputs = sam([bare | nothing, bare | nothing | dict(boxes=box), record() | dict(boxes=None, mask_inputs=None)],
                  multimask_output=False)
    expected = sam([bare, bare | dict(boxes=box), record()], multimask_output=False)
    for mine, theirs in zip(outputs, expected):
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)


def test_float64_image_and_mask_inputs_run_in_the_models_dtype(sam):
    # The plain model failed with "Input type (double) and bias type (float) should be the same".
    mask = torch.randn(1, 1, LOW, LOW, generator=torch.Generator().manual_seed(0))
    good = record(image=torch.linspace(0.0, 255.0, 3 * 64 * SIZE).reshape(3, 64, SIZE), mask_inputs=mask)
    doubles = good | dict(image=good["image"].double(), mask_inputs=mask.double())
    expected = sam([good], multimask_output=True)[0]
    output = sam([doubles], multimask_output=True)[0]
    assert doubles["image"].dtype == torch.float64  # the user's record is left as it was
    for key in expected:
        torch.testing.assert_close(output[key], expected[key], rtol=0, atol=0)


# ---- Sam.preprocess and Sam.postprocess_masks ----------------------------------------------------------------------


PREPROCESS_ERRORS = {
    "an image that was not resized (cropped before)": (
        torch.zeros(3, 200, 300),
        r"^x: expected shape \(3, h, w\) or \(B, 3, h, w\) with h, w <= 96 \(it is padded to 96 x 96\), got Tensor "
        r"of shape \(3, 200, 300\).*Resize it first: ResizeLongestSide\(96\)\.apply_image_torch"),
    "channels last": (torch.zeros(64, SIZE, 3), r"^x: expected shape .*It looks channels-last: use \.permute\(2, 0, 1\)"),
    "a numpy array": (np.zeros((3, 64, SIZE)), r"^x: expected a torch\.Tensor of shape \(3, h, w\) or \(B, 3, h, w\), got ndarray"),
    "a gray (h, w) image": (torch.zeros(64, SIZE), r"^x: expected shape \(3, h, w\) or \(B, 3, h, w\).*got Tensor of shape \(64, 96\)"),
    "booleans": (torch.zeros(3, 64, SIZE, dtype=torch.bool), r"^x: expected numbers 0\.\.255"),
    "another device": (torch.zeros(3, 64, SIZE, device="meta"), r"^x: expected a tensor on the model's device cpu"),
}


@pytest.mark.parametrize("case", PREPROCESS_ERRORS)
def test_preprocess_refuses_what_it_would_crop_or_misread(sam, case):
    image, pattern = PREPROCESS_ERRORS[case]
    with pytest.raises(SamInputError) as error:
        sam.preprocess(image)
    assert re.search(pattern, str(error.value)), str(error.value)


def test_preprocess_takes_an_image_or_a_batch_of_at_most_img_size(sam):
    assert sam.preprocess(torch.full((3, 64, SIZE), 100.0)).shape == (3, SIZE, SIZE)
    assert sam.preprocess(torch.full((2, 3, 50, 70), 100, dtype=torch.uint8)).shape == (2, 3, SIZE, SIZE)  # training


LOGITS = torch.randn(2, 3, LOW, LOW, generator=torch.Generator().manual_seed(1))

POSTPROCESS_ERRORS = {
    "input_size as (W, H)": ((LOGITS, (SIZE, 64), (150, 225)),
                             r"^input_size: expected the size of original_size \(150, 225\) resized with "
                             r"ResizeLongestSide\(96\), \(64, 96\), got \(96, 64\)\. \(H, W\), not \(W, H\)\?$"),
    "original_size as (W, H)": ((LOGITS, (64, SIZE), (225, 150)), r"^input_size: .*\(H, W\), not \(W, H\)\?$"),
    "input_size equal to original_size (not resized)": (
        (LOGITS, (150, 225), (150, 225)),
        r"^input_size: expected \(h, w\), two positive integers with max\(h, w\) == 96 \(the resized image's size, "
        r"before padding\), got tuple \(150, 225\)\. It equals original_size"),
    "input_size of another image": ((LOGITS, (SIZE, 40), (150, 225)), r"^input_size: expected the size of original_size"),
    "an int input_size": ((LOGITS, SIZE, (150, 225)), r"^input_size: expected \(h, w\), .*got int 96\.$"),
    "original_size (0, 600)": ((LOGITS, (64, SIZE), (0, 600)),
                               r"^original_size: expected \(H, W\), two positive integers, got tuple \(0, 600\)\.$"),
    "original_size (H, W, 3)": ((LOGITS, (64, SIZE), (150, 225, 3)),
                                r"^original_size: expected \(H, W\), two positive integers, got tuple \(150, 225, 3\)\. "
                                r"For an image array: image\.shape\[:2\]\.$"),
    "3-D masks": ((LOGITS[0], (64, SIZE), (150, 225)),
                  rf"^masks: expected a tensor of mask logits of shape \(B, C, h, w\), got Tensor of shape \(3, {LOW}, {LOW}\)"
                  r".*masks\[None\]"),
    "numpy masks": ((LOGITS.numpy(), (64, SIZE), (150, 225)), r"^masks: expected a tensor .*got ndarray"),
    "boolean masks": ((LOGITS > 0, (64, SIZE), (150, 225)), r"^masks: expected floating-point mask logits"),
}


@pytest.mark.parametrize("case", POSTPROCESS_ERRORS)
def test_postprocess_masks_refuses_sizes_that_would_give_wrong_masks(sam, case):
    arguments, pattern = POSTPROCESS_ERRORS[case]
    with pytest.raises(SamInputError) as error:
        sam.postprocess_masks(*arguments)
    assert re.search(pattern, str(error.value)), str(error.value)


@pytest.mark.parametrize("input_size, original_size", [
    ((64, SIZE), (150, 225)),
    (torch.Size([64, SIZE]), np.array([150, 225])),  # Sam.forward's image.shape[-2:]; numpy integers
    ((65, SIZE), (150, 225)),  # another resizer rounding the other way
    ((SIZE, SIZE), (SIZE, SIZE)),  # the training scenes fill the input
    ((SIZE, SIZE), (150, 225)),  # a stretched, square resize
], ids=["resized", "torch.Size and numpy", "rounded the other way", "square scenes", "stretched"])
def test_postprocess_masks_takes_what_the_callers_pass(sam, input_size, original_size):
    assert sam.postprocess_masks(LOGITS, input_size, original_size).shape == (2, 3, *(int(s) for s in original_size))
