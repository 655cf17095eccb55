"""Our predictor with our vit_b equals the official predictor with the official vit_b (same random weights).

Every kind of prompt (points, boxes, both, mask inputs), on a landscape (333x517) and a portrait (517x333)
picture. Thresholded masks must agree on at least 99.9 % of pixels; IoU predictions and logits are compared with a
tolerance that covers float rounding only (the models differ in the order of a few float operations).
"""

import numpy as np
import pytest
import torch
from sam_from_scratch import SamPredictor

MIN_PIXEL_AGREEMENT = 0.999
LOGIT_ATOL = 1e-4  # logits are O(1); measured differences are below 1e-6
IOU_ATOL = 1e-5


def at(image, *fractions):
    """Points given as fractions of the width and height -> pixels (N, 2)."""
    h, w = image.shape[:2]
    return np.array(fractions, dtype=float).reshape(-1, 2) * [w, h]


def box_at(image, x1, y1, x2, y2):
    return at(image, (x1, y1), (x2, y2)).reshape(4)


MEASURED = []  # (case, pixel agreement, max |logit diff|, max |IoU diff|), printed at the end (pytest -s)


@pytest.fixture(scope="module", autouse=True)
def print_agreement_figures():
    yield
    if MEASURED:
        print(f"\n{'case':62s} {'pixels agree':>12s} {'max logit diff':>15s} {'max IoU diff':>13s}")
        for case, agreement, logit_diff, iou_diff in MEASURED:
            print(f"{case:62s} {agreement:12.6f} {logit_diff:15.2e} {iou_diff:13.2e}")


def assert_outputs_close(ours, official, case=""):
    masks, iou, low_res = ours
    official_masks, official_iou, official_low_res = official
    assert masks.shape == official_masks.shape and masks.dtype == official_masks.dtype
    assert iou.shape == official_iou.shape and low_res.shape == official_low_res.shape
    binary, official_binary = (masks, official_masks) if masks.dtype == bool else (masks > 0, official_masks > 0)
    agreement = (binary == official_binary).mean()
    logit_diff = np.abs(low_res - official_low_res).max()
    if masks.dtype != bool:
        logit_diff = max(logit_diff, np.abs(masks - official_masks).max())
    MEASURED.append((case, agreement, logit_diff, np.abs(iou - official_iou).max()))
    assert agreement >= MIN_PIXEL_AGREEMENT
    if masks.dtype != bool:
        np.testing.assert_allclose(masks, official_masks, atol=LOGIT_ATOL, rtol=0)
    np.testing.assert_allclose(iou, official_iou, atol=IOU_ATOL, rtol=0)
    np.testing.assert_allclose(low_res, official_low_res, atol=LOGIT_ATOL, rtol=0)


@pytest.fixture(scope="module")
def prepared(vit_b_predictors):
    return vit_b_predictors


@pytest.fixture(scope="module", params=["landscape", "portrait"])
def image_and_predictors(request, prepared):
    return prepared(request.param)


def cases(image):
    return {
        "one point, three masks": dict(point_coords=at(image, (0.4, 0.45)), point_labels=np.array([1])),
        "positive and negative points": dict(
            point_coords=at(image, (0.4, 0.45), (0.7, 0.3), (0.1, 0.8)), point_labels=np.array([1, 1, 0]),
            multimask_output=False,
        ),
        "a box": dict(box=box_at(image, 0.1, 0.1, 0.7, 0.8), multimask_output=False),
        "box and negative point": dict(
            box=box_at(image, 0.1, 0.1, 0.7, 0.8), point_coords=at(image, (0.4, 0.45)), point_labels=np.array([0]),
            multimask_output=False,
        ),
        "logits instead of masks": dict(
            point_coords=at(image, (0.6, 0.6)), point_labels=np.array([1]), return_logits=True
        ),
    }


CASE_NAMES = list(cases(np.zeros((10, 10, 3))))


def test_embeddings_are_close(image_and_predictors):
    _, ours, official = image_and_predictors
    torch.testing.assert_close(ours.get_image_embedding(), official.get_image_embedding(), atol=1e-4, rtol=1e-4)
    assert ours.input_size == official.input_size and ours.original_size == official.original_size


@pytest.mark.parametrize("case", CASE_NAMES)
def test_prompt_case_matches_official(image_and_predictors, case):
    image, ours, official = image_and_predictors
    kwargs = cases(image)[case]
    assert_outputs_close(ours.predict(**kwargs), official.predict(**kwargs), f"{case} ({image.shape[0]}x{image.shape[1]})")


def test_refining_with_the_previous_best_logits_matches_official(image_and_predictors):
    image, ours, official = image_and_predictors
    first = dict(point_coords=at(image, (0.4, 0.45)), point_labels=np.array([1]))
    results = []
    for predictor in (ours, official):
        _, iou, low_res = predictor.predict(**first)
        best = low_res[np.argmax(iou)][None]  # (1, 256, 256)
        second = dict(point_coords=at(image, (0.4, 0.45), (0.8, 0.2)), point_labels=np.array([1, 0]))
        results.append(predictor.predict(**second, mask_input=best, multimask_output=False))
    assert_outputs_close(*results, f"refined with mask_input ({image.shape[0]}x{image.shape[1]})")


def test_batched_boxes_through_predict_torch_match_official(image_and_predictors):
    image, ours, official = image_and_predictors
    boxes = torch.as_tensor(np.stack([
        box_at(image, 0.1, 0.1, 0.7, 0.8), box_at(image, 0.5, 0.2, 0.9, 0.6), box_at(image, 0.0, 0.0, 1.0, 1.0),
    ]), dtype=torch.float)
    outputs = []
    for predictor in (ours, official):
        transformed = predictor.transform.apply_boxes_torch(boxes, image.shape[:2])
        masks, iou, low_res = predictor.predict_torch(None, None, boxes=transformed, multimask_output=False)
        assert masks.shape == (3, 1, *image.shape[:2]) and iou.shape == (3, 1) and low_res.shape == (3, 1, 256, 256)
        outputs.append(tuple(t.numpy() for t in (masks, iou, low_res)))
    assert_outputs_close(*outputs, f"3 boxes through predict_torch ({image.shape[0]}x{image.shape[1]})")


@pytest.mark.parametrize("return_logits", [False, True])
def test_point_prompts_decoded_in_chunks_match_official(image_and_predictors, monkeypatch, return_logits):
    # five one-point prompts, ours two at a time (chunks of 2, 2, 1: the masks of the later chunks are thresholded
    # straight into the output), the official predictor all at once
    image, ours, official = image_and_predictors
    _, C, h, w = ours.features.shape
    monkeypatch.setattr(ours, "cpu_chunk_bytes", 2 * C * h * w * ours.features.element_size())
    assert ours._prompts_per_chunk(5) == 2
    points = torch.as_tensor(at(image, (0.4, 0.45), (0.7, 0.3), (0.1, 0.8), (0.5, 0.5), (0.9, 0.9)), dtype=torch.float)
    outputs = []
    for predictor in (ours, official):
        coords = predictor.transform.apply_coords_torch(points, image.shape[:2])[:, None, :]  # (5, 1, 2)
        labels = torch.ones(5, 1, dtype=torch.int)
        masks, iou, low_res = predictor.predict_torch(coords, labels, return_logits=return_logits)
        assert masks.shape == (5, 3, *image.shape[:2]) and masks.dtype == (torch.float if return_logits else torch.bool)
        outputs.append(tuple(t.numpy() for t in (masks, iou, low_res)))
    case = f"5 points in chunks of 2 ({image.shape[0]}x{image.shape[1]}, logits {return_logits})"
    assert_outputs_close(*outputs, case)


def test_bgr_input_matches_official(prepared, ours_vit_b):
    # The official predictor turns BGR into RGB before anything else, so its answer for the BGR picture is
    # its answer for the RGB one (already embedded): one vit_b pass saved.
    image, _, official = prepared("landscape")
    ours = SamPredictor(ours_vit_b)
    ours.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    kwargs = cases(image)["one point, three masks"]
    assert_outputs_close(ours.predict(**kwargs), official.predict(**kwargs), "BGR input, one point (333x517)")
