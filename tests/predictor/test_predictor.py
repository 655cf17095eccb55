"""SamPredictor: same results as the official predictor, conversions, and a clear error for every bad input.

Runs on the official Sam built with our small config (random weights): cheap, and its input size is not
1024, so nothing here may assume 1024 / 256. With the same model object, our predictor must give
bit-identical results to the official one; the comparison of the two models is test_predictor_parity.py.
"""

import re
import warnings

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor as OfficialPredictor

from sam_from_scratch import SamPredictor
from sam_from_scratch.build import build_sam
from sam_from_scratch.config import CONFIGS
from sam_from_scratch.errors import SamInputError


@pytest.fixture(scope="module")
def image(scene_images):
    return scene_images["landscape"]  # 333 x 517


@pytest.fixture(scope="module")
def predictors(official_tiny_random, image):
    ours, official = SamPredictor(official_tiny_random), OfficialPredictor(official_tiny_random)
    ours.set_image(image)
    official.set_image(image)
    return ours, official


@pytest.fixture(scope="module")
def predictor(predictors):
    return predictors[0]


@pytest.fixture(scope="module")
def low_res(official_tiny_random):
    return official_tiny_random.prompt_encoder.mask_input_size[0]  # 4 x the embedding grid


POINT = dict(point_coords=np.array([[200.0, 150.0]]), point_labels=np.array([1]))


def assert_identical(ours, official):
    for mine, theirs in zip(ours, official):
        assert mine.dtype == theirs.dtype
        np.testing.assert_array_equal(mine, theirs)


# ---- same results as the official predictor --------------------------------------------------------------


def prompt_cases(low_res):
    rng = np.random.default_rng(0)
    return {
        "one point": POINT,
        "points": dict(point_coords=np.array([[200, 150], [400, 60], [30, 300]]), point_labels=np.array([1, 1, 0]),
                       multimask_output=False),
        "box": dict(box=np.array([40, 30, 380, 290])),
        "box and negative point": dict(box=np.array([40, 30, 380, 290]), point_coords=np.array([[210, 160]]),
                                       point_labels=np.array([0]), multimask_output=False),
        "mask input": dict(**POINT, mask_input=rng.normal(size=(1, low_res, low_res)).astype(np.float32)),
        "logits": dict(**POINT, return_logits=True),
        "no prompt": dict(),
    }


@pytest.mark.parametrize("case", list(prompt_cases(8)))
def test_predict_is_identical_to_official_with_the_same_model(predictors, low_res, case):
    ours, official = predictors
    kwargs = prompt_cases(low_res)[case]
    assert_identical(ours.predict(**kwargs), official.predict(**kwargs))


def test_predict_returns_official_shapes_and_types(predictor, image, low_res):
    masks, iou, low_res_logits = predictor.predict(**POINT)
    assert masks.shape == (3, *image.shape[:2]) and masks.dtype == bool
    assert iou.shape == (3,) and iou.dtype == np.float32
    assert low_res_logits.shape == (3, low_res, low_res) and low_res_logits.dtype == np.float32
    masks, _, _ = predictor.predict(**POINT, multimask_output=False, return_logits=True)
    assert masks.shape == (1, *image.shape[:2]) and masks.dtype == np.float32


def test_a_plain_model_under_the_callers_autocast_still_answers_in_float32(image):
    """A plain decoder under torch.autocast gives bfloat16 logits; numpy has no bfloat16."""
    predictor = SamPredictor(build_sam(CONFIGS["tiny"], fast=False), dtype="float32")
    predictor.set_image(image)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks, iou, low_res_logits = predictor.predict(**POINT, return_logits=True)
    assert masks.dtype == iou.dtype == low_res_logits.dtype == np.float32


def test_predict_torch_batches_boxes_like_official(predictors, image):
    ours, official = predictors
    boxes = torch.tensor([[40.0, 30.0, 380.0, 290.0], [300.0, 10.0, 510.0, 200.0]])
    results = []
    for predictor in (ours, official):
        transformed = predictor.transform.apply_boxes_torch(boxes, image.shape[:2])
        results.append([t.numpy() for t in predictor.predict_torch(None, None, boxes=transformed)])
    assert results[0][0].shape == (2, 3, *image.shape[:2])
    assert_identical(*results)


def test_embedding_equals_official(predictors):
    ours, official = predictors
    torch.testing.assert_close(ours.get_image_embedding(), official.get_image_embedding(), rtol=0, atol=0)


def test_set_torch_image_equals_set_image(official_tiny_random, image, predictor):
    other = SamPredictor(official_tiny_random)
    resized = other.transform.apply_image(image)
    other.set_torch_image(torch.as_tensor(resized).permute(2, 0, 1)[None], image.shape[:2])
    torch.testing.assert_close(other.get_image_embedding(), predictor.get_image_embedding(), rtol=0, atol=0)


# ---- conversions -----------------------------------------------------------------------------------------------


def embedding_of(model, image, **kwargs):
    predictor = SamPredictor(model)
    predictor.set_image(image, **kwargs)
    return predictor.get_image_embedding()


def test_bgr_input_equals_the_rgb_image(official_tiny_random, image, predictor):
    bgr = np.ascontiguousarray(image[..., ::-1])
    torch.testing.assert_close(embedding_of(official_tiny_random, bgr, image_format="BGR"),
                               predictor.get_image_embedding(), rtol=0, atol=0)


@pytest.mark.parametrize("layout", ["HxW", "HxWx1"])
def test_grayscale_is_repeated_to_rgb(official_tiny_random, image, layout):
    gray = image[..., 1]
    given = gray if layout == "HxW" else gray[..., None]
    torch.testing.assert_close(embedding_of(official_tiny_random, given),
                               embedding_of(official_tiny_random, np.repeat(gray[..., None], 3, axis=2)), rtol=0, atol=0)


def test_rgba_loses_its_alpha(official_tiny_random, image, predictor):
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 17, np.uint8)], axis=-1)
    torch.testing.assert_close(embedding_of(official_tiny_random, rgba), predictor.get_image_embedding(), rtol=0, atol=0)


def test_mask_input_without_batch_axis_gains_it(predictor, low_res):
    mask = np.random.default_rng(1).normal(size=(low_res, low_res)).astype(np.float32)
    assert_identical(predictor.predict(**POINT, mask_input=mask), predictor.predict(**POINT, mask_input=mask[None]))


def test_box_of_shape_1x4_is_accepted(predictor):
    box = np.array([40, 30, 380, 290])
    assert_identical(predictor.predict(box=box[None]), predictor.predict(box=box))


# ---- clear errors ----------------------------------------------------------------------------------------------


def error_message(call):
    with pytest.raises(SamInputError) as info:
        call()
    return str(info.value)


IMAGE_ERRORS = {
    "a list": ([[0, 0, 0]], r"^image: expected a numpy array .* got list"),
    "a tensor": (torch.zeros(3, 8, 8, dtype=torch.uint8), r"^image: .*got Tensor of shape \(3, 8, 8\).*permute"),
    "a channels-last tensor": (torch.zeros(8, 9, 3, dtype=torch.uint8),
                               r"^image: .*got Tensor of shape \(8, 9, 3\).*Use image\.cpu\(\)\.numpy\(\) for an HxWxC tensor"),
    "4 dimensions": (np.zeros((1, 8, 8, 3), np.uint8), r"^image: expected an array with 2 .*got ndarray of shape \(1, 8, 8, 3\)"),
    "channels first": (np.zeros((3, 40, 60), np.uint8), r"^image: expected channels last.*transpose\(1, 2, 0\)"),
    "no pixels": (np.zeros((0, 10, 3), np.uint8), r"^image: expected an image with at least one pixel, got .*\(0, 10, 3\)"),
    "5 channels": (np.zeros((8, 8, 5), np.uint8), r"^image: expected 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels.*\(8, 8, 5\)"),
    "2 channels": (np.zeros((8, 8, 2), np.uint8), r"^image: expected 1 \(gray\), 3 \(RGB\) or 4"),
    "floats": (np.zeros((8, 8, 3), np.float32), r"^image: expected dtype uint8 .*float32.*astype\(np.uint8\)"),
    # the hint follows the values: scaling floats already on 0..255 by 255 would overflow uint8
    "floats in [0, 1]": (np.full((8, 8, 3), 0.5), r"float64\. For floats in \[0, 1\] use \(image \* 255\)\.round\(\)\.astype\(np\.uint8\)\.$"),
    "floats on 0..255": (np.full((8, 8, 3), 200.0), r"float64\. Its values lie in 0\.\.255: use image\.round\(\)\.astype\(np\.uint8\)\.$"),
    "int64 on 0..255": (np.full((8, 8, 3), 200), r"int64\. Its values lie in 0\.\.255: use image\.astype\(np\.uint8\)\.$"),
    "16-bit": (np.full((8, 8, 3), 40000, np.uint16), r"uint16\. Its values span 40000\.\.40000: scale them into 0\.\.255 first\.$"),
    "a boolean mask": (np.zeros((8, 8), bool), r"bool\. For a mask, use image\.astype\(np\.uint8\) \* 255\.$"),
}


@pytest.mark.parametrize("case", IMAGE_ERRORS)
def test_bad_images_are_explained(official_tiny_random, case):
    bad, pattern = IMAGE_ERRORS[case]
    assert re.search(pattern, error_message(lambda: SamPredictor(official_tiny_random).set_image(bad)))


def test_unknown_image_format_is_explained(official_tiny_random, image):
    message = error_message(lambda: SamPredictor(official_tiny_random).set_image(image, image_format="RGBA"))
    assert message == "image_format: expected one of 'RGB', 'BGR', got 'RGBA'."


def test_predicting_before_set_image_says_what_to_do(official_tiny_random):
    predictor = SamPredictor(official_tiny_random)
    for call in (lambda: predictor.predict(**POINT), lambda: predictor.predict_torch(None, None),
                 predictor.get_image_embedding):
        with pytest.raises(RuntimeError, match=r"no image is set\. Call predictor\.set_image\(image\) first"):
            call()


def test_reset_image_forgets_the_image(official_tiny_random, image):
    predictor = SamPredictor(official_tiny_random)
    predictor.set_image(image[:50, :60])
    predictor.reset_image()
    assert not predictor.is_image_set and predictor.features is None
    with pytest.raises(RuntimeError, match=r"^predict: no image is set\. Call predictor\.set_image\(image\) first\.$"):
        predictor.predict(**POINT)


def prompt_errors(low_res):
    one_point = np.array([[10.0, 20.0]])
    return {
        "coords as a list": (dict(point_coords=[[10, 20]], point_labels=np.array([1])),
                             r"^point_coords: expected a numpy array of shape \(N, 2\), got list"),
        "one point without its row axis": (dict(point_coords=np.array([10, 20]), point_labels=np.array([1])),
                                           r"^point_coords: expected shape \(N, 2\).*np\.array\(\[\[x, y\]\]\)"),
        "three numbers per point": (dict(point_coords=np.zeros((2, 3)), point_labels=np.array([1, 1])),
                                    r"^point_coords: expected shape \(N, 2\).*got ndarray of shape \(2, 3\)"),
        "NaN coordinate": (dict(point_coords=np.array([[np.nan, 3.0]]), point_labels=np.array([1])),
                           r"^point_coords: expected finite numbers.*nan"),
        "infinite coordinate": (dict(point_coords=np.array([[np.inf, 3.0]]), point_labels=np.array([1])),
                                r"^point_coords: expected finite numbers.*inf"),
        "labels missing": (dict(point_coords=one_point),
                           r"^point_labels: expected an array of 1 labels .* because point_coords was given, got None"),
        "labels as text": (dict(point_coords=one_point, point_labels="1"),
                           r"^point_labels: expected a numpy array of shape \(1,\), got str"),
        "labels of another length": (dict(point_coords=one_point, point_labels=np.array([1, 0])),
                                     r"^point_labels: expected shape \(1,\), one label per point.*got ndarray of shape \(2,\)"),
        "label 2": (dict(point_coords=np.zeros((2, 2)), point_labels=np.array([1, 2])),
                    r"^point_labels: expected values in \{0, 1\} .*got list \[1, 2\]"),
        "label -1": (dict(point_coords=one_point, point_labels=np.array([-1])), r"^point_labels: expected values in \{0, 1\}"),
        "labels without points": (dict(point_labels=np.array([1])), r"^point_coords: expected an \(N, 2\) array because point_labels"),
        "point outside the image": (dict(point_coords=np.array([[10.0, 20.0], [600.0, 20.0]]), point_labels=np.array([1, 1])),
                                    r"^point_coords: expected points \(x, y\) inside the 517x333 image .*got 1 outside, e\.g\. \[600\.0, 20\.0\]"),
        "point given as (y, x)": (dict(point_coords=np.array([[20.0, 400.0]]), point_labels=np.array([1])),
                                  r"^point_coords: expected points \(x, y\) inside"),
        "point left of the image": (dict(point_coords=np.array([[-1.0, 20.0]]), point_labels=np.array([1])),
                                    r"^point_coords: expected points \(x, y\) inside"),
        "box outside the image": (dict(box=np.array([600, 10, 700, 40])),
                                  r"^box: expected a box that overlaps the 517x333 image, got \[600, 10, 700, 40\]"),
        "box as a list": (dict(box=[1, 2, 3, 4]), r"^box: expected a numpy array \[x1, y1, x2, y2\].*got list"),
        "box of 3 numbers": (dict(box=np.array([1, 2, 3])), r"^box: expected 4 numbers .*shape \(3,\)"),
        "two boxes": (dict(box=np.zeros((2, 4))), r"^box: expected 4 numbers .*shape \(2, 4\).*"),
        "box with x2 < x1": (dict(box=np.array([50, 10, 20, 40])), r"^box: expected x1 <= x2 and y1 <= y2 .*got \[50, 10, 20, 40\]\. Is it \[x, y, width, height\]"),
        "box with y2 < y1": (dict(box=np.array([10, 50, 20, 40])), r"^box: expected x1 <= x2 and y1 <= y2"),
        "NaN box": (dict(box=np.array([np.nan, 1, 2, 3])), r"^box: expected finite numbers"),
        "mask_input of another size": (dict(mask_input=np.zeros((1, low_res + 1, low_res + 1))),
                                       rf"^mask_input: expected shape \(1, {low_res}, {low_res}\).*got ndarray of shape \(1, {low_res + 1}, {low_res + 1}\)"),
        "three mask inputs": (dict(mask_input=np.zeros((3, low_res, low_res))),
                              r"^mask_input: expected shape .*Pass one mask: the best of a previous call's low_res_logits"),
        "mask_input as a list": (dict(mask_input=[[0.0]]), rf"^mask_input: expected a numpy array of shape \(1, {low_res}, {low_res}\), got list"),
    }


@pytest.mark.parametrize("case", list(prompt_errors(8)))
def test_bad_prompts_are_explained(predictor, low_res, case):
    kwargs, pattern = prompt_errors(low_res)[case]
    message = error_message(lambda: predictor.predict(**kwargs))
    assert re.search(pattern, message), message


def test_bad_torch_prompts_are_explained(predictor):
    message = error_message(lambda: predictor.predict_torch(torch.zeros(1, 2), torch.ones(1, 2)))
    assert message.startswith("point_coords: expected a tensor of shape (B, N, 2), got Tensor of shape (1, 2)")
    message = error_message(lambda: predictor.predict_torch(torch.zeros(2, 1, 2), torch.ones(2)))
    assert message.startswith("point_labels: expected a tensor of shape (2, 1), one label per point")


def test_bad_torch_images_are_explained(official_tiny_random):
    predictor = SamPredictor(official_tiny_random)
    size = official_tiny_random.image_encoder.img_size
    message = error_message(lambda: predictor.set_torch_image(torch.zeros(1, 3, 10, 20), (10, 20)))
    assert message.startswith(f"transformed_image: expected shape (1, 3, h, w) with max(h, w) == {size}")
    message = error_message(lambda: predictor.set_torch_image(torch.zeros(1, 3, size, size), (0, 5)))
    assert message.startswith("original_image_size: expected (H, W), two positive integers")


def test_an_original_size_that_does_not_resize_to_the_image_is_refused(official_tiny_random, image):
    # The masks come back at original_image_size: a swapped (W, H) would stretch them without a word.
    predictor = SamPredictor(official_tiny_random)
    resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None]  # (1, 3, h, w)
    h, w = image.shape[:2]
    message = error_message(lambda: predictor.set_torch_image(resized, (w, h)))
    assert message.startswith(f"original_image_size: expected the size of the image before ResizeLongestSide, got ({w}, {h})")
    assert "Is it (W, H)?" in message and not predictor.is_image_set


@pytest.mark.parametrize("size", [np.array, torch.tensor, list], ids=["numpy", "tensor", "list"])
def test_the_original_size_may_be_any_pair_of_integers(official_tiny_random, image, size):
    predictor = SamPredictor(official_tiny_random)
    resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None]
    predictor.set_torch_image(resized, size(list(image.shape[:2])))  # the official predictor takes these too
    assert predictor.original_size == image.shape[:2]
    assert predictor.predict(**POINT)[0].shape[1:] == image.shape[:2]


@pytest.mark.parametrize("scale, pattern", [
    (lambda x: x / 255, r"Its values lie in \[0, 1\] \(largest 1\): multiply by 255\."),
    (lambda x: (x - 127.5) / 58.0, r"Its values run from -2\.2 to 2\.2, as if normalised already: pass the pixels"),
    (lambda x: x * 257, r"Its values reach 65535: 16-bit\? Scale them to 0\.\.255\."),
], ids=["0..1", "normalised", "16-bit"])
def test_float_pixels_on_another_scale_are_refused(official_tiny_random, image, scale, pattern):
    predictor = SamPredictor(official_tiny_random)
    resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None].float()
    resized[0, 0, 0, 0], resized[0, 0, 0, 1] = 0, 255
    message = error_message(lambda: predictor.set_torch_image(scale(resized), image.shape[:2]))
    assert message.startswith("transformed_image: expected values 0..255, got Tensor of shape")
    assert re.search(pattern, message), message
    predictor.set_torch_image(resized, image.shape[:2])  # the same pixels 0..255 are fine


@pytest.mark.parametrize("dtype, scale, pattern", [
    (torch.int32, lambda x: x * 257, r"Its values reach 65535: 16-bit\? Scale them to 0\.\.255\."),
    (torch.int64, lambda x: x - 300, r"Its values go down to -300\."),
    (torch.int16, lambda x: x + 1, r"Its values reach 256: 16-bit\?"),
], ids=["int32 16-bit", "int64 negative", "int16 256"])
def test_integer_pixels_outside_0_255_are_refused(official_tiny_random, image, dtype, scale, pattern):
    """Integer pixels were never range-checked: 16-bit values gave another embedding without a word."""
    predictor = SamPredictor(official_tiny_random)
    resized = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1)[None].to(dtype)
    resized[0, 0, 0, 0], resized[0, 0, 0, 1] = 0, 255
    message = error_message(lambda: predictor.set_torch_image(scale(resized), image.shape[:2]))
    assert message.startswith("transformed_image: expected values 0..255, got Tensor of shape")
    assert re.search(pattern, message), message
    ours = build_sam(CONFIGS["tiny"])  # Sam.preprocess checks them too (the official one is the oracle here)
    message = error_message(lambda: ours.preprocess(scale(resized)[0]))
    assert message.startswith("x: expected values 0..255, got Tensor of shape") and re.search(pattern, message)
    predictor.set_torch_image(resized, image.shape[:2])  # the same pixels 0..255 in that dtype are fine


@pytest.mark.parametrize("dtype, fix", [(torch.float16, r"speed_up\(model, torch\.float16\) from sam_from_scratch\.fast, or "
                                                      r"model\.float\(\)\.$"),
                                        (torch.float64, r"model\.float\(\)\.$")])
def test_a_plain_model_converted_to_another_precision_is_refused_before_the_first_image(dtype, fix):
    """It embedded an image, then failed at the first click inside the positional encoding (m1 and m2 dtypes)."""
    plain = build_sam(CONFIGS["tiny"], fast=False).to(dtype)
    message = error_message(lambda: SamPredictor(plain))
    assert re.search(rf"^sam_model: expected a model in float32, or one sped up for another precision \(the plain model "
                     rf"computes in float32 only\), got a plain model in {dtype}\. Use " + fix, message), message
    SamPredictor(build_sam(CONFIGS["tiny"]).to(dtype))  # the fast paths compute in it


def test_boolean_torch_labels_are_refused(predictor):
    message = error_message(lambda: predictor.predict_torch(torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool)))
    assert message.startswith("point_labels: expected a tensor of numbers -1, 0 or 1, got Tensor of shape (1, 1) and dtype torch.bool")


# ---- on a GPU ----------------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_gives_the_cpu_results(official_tiny_random, image, predictor, low_res):
    import copy

    from sam_from_scratch import SamAutomaticMaskGenerator

    gpu_model = copy.deepcopy(official_tiny_random).to("cuda")
    gpu = SamPredictor(gpu_model)
    gpu.set_image(image)
    for kwargs in prompt_cases(low_res).values():
        (masks, iou, low), (cpu_masks, cpu_iou, cpu_low) = gpu.predict(**kwargs), predictor.predict(**kwargs)
        assert ((masks > 0) == (cpu_masks > 0)).mean() >= 0.999
        assert ((low > 0) == (cpu_low > 0)).mean() >= 0.999
        np.testing.assert_allclose(iou, cpu_iou, atol=1e-3)
    everything = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    records = SamAutomaticMaskGenerator(gpu_model, **everything).generate(image)
    assert len(records) == len(SamAutomaticMaskGenerator(official_tiny_random, **everything).generate(image)) == 48


# ---- predict_torch checks what predict checks ------------------------------------------------------------------


def torch_prompt_errors(low_res):
    point, label = torch.tensor([[[10.0, 20.0]]]), torch.ones(1, 1, dtype=torch.int)
    two_points, two_labels = torch.zeros(2, 1, 2), torch.ones(2, 1, dtype=torch.int)
    mask = torch.zeros(1, 1, low_res, low_res)
    return {
        "points B=2, boxes B=3": (dict(point_coords=two_points, point_labels=two_labels, boxes=torch.zeros(3, 4)),
                                  r"^point_coords, boxes: expected the same batch size B .*got point_coords B=2, boxes B=3"),
        "points B=1, mask_input B=2": (dict(point_coords=point, point_labels=label, mask_input=mask.repeat(2, 1, 1, 1)),
                                       r"^point_coords, mask_input: expected the same batch size B .*point_coords B=1, mask_input B=2"),
        "boxes B=2, mask_input B=1": (dict(point_coords=None, point_labels=None, boxes=torch.zeros(2, 4), mask_input=mask),
                                      r"^boxes, mask_input: expected the same batch size"),
        "no prompts in the batch": (dict(point_coords=torch.zeros(0, 1, 2), point_labels=torch.ones(0, 1)),
                                    r"^point_coords: expected at least one prompt \(B >= 1\), got a batch of 0"),
        "no boxes in the batch": (dict(point_coords=None, point_labels=None, boxes=torch.zeros(0, 4)),
                                  r"^boxes: expected at least one prompt \(B >= 1\)"),
        "no points in a prompt": (dict(point_coords=torch.zeros(1, 0, 2), point_labels=torch.ones(1, 0)),
                                  r"^point_coords: expected a tensor of shape \(B, N, 2\), got Tensor of shape \(1, 0, 2\)"),
        "label 2": (dict(point_coords=point, point_labels=torch.full((1, 1), 2)),
                    r"^point_labels: expected values in \{-1, 0, 1\} .*got list \[\[2\]\]"),
        "label 3": (dict(point_coords=point, point_labels=torch.full((1, 1), 3)), r"^point_labels: expected values in \{-1, 0, 1\}"),
        "label 0.5": (dict(point_coords=point, point_labels=torch.full((1, 1), 0.5)), r"^point_labels: expected values in \{-1, 0, 1\}"),
        "labels without points": (dict(point_coords=None, point_labels=label),
                                  r"^point_coords: expected a tensor of shape \(B, N, 2\) because point_labels was given, got NoneType"),
        "NaN coordinate": (dict(point_coords=torch.tensor([[[float("nan"), 3.0]]]), point_labels=label),
                           r"^point_coords: expected finite numbers \(no NaN or inf\), got Tensor of shape \(1, 1, 2\).*1 value\(s\) are not finite"),
        "infinite coordinate": (dict(point_coords=torch.tensor([[[float("inf"), 3.0]]]), point_labels=label),
                                r"^point_coords: expected finite numbers"),
        "boolean coordinates": (dict(point_coords=torch.zeros(1, 1, 2, dtype=torch.bool), point_labels=label),
                                r"^point_coords: expected a tensor of shape \(B, N, 2\), got Tensor .*torch\.bool"),
        "numpy coordinates": (dict(point_coords=np.zeros((1, 1, 2)), point_labels=label),
                              r"^point_coords: expected a tensor .*got ndarray.*torch\.as_tensor"),
        "NaN box": (dict(point_coords=None, point_labels=None, boxes=torch.tensor([[float("nan"), 0.0, 5.0, 5.0]])),
                    r"^boxes: expected finite numbers"),
        "box with x2 < x1": (dict(point_coords=None, point_labels=None, boxes=torch.tensor([[0.0, 0, 5, 5], [50.0, 10, 20, 40]])),
                             r"^boxes\[1\]: expected x1 <= x2 and y1 <= y2 .*got \[50\.0, 10\.0, 20\.0, 40\.0\]"),
        "boxes of shape (B, 2, 4)": (dict(point_coords=None, point_labels=None, boxes=torch.zeros(1, 2, 4)),
                                     r"^boxes: expected a tensor of shape \(B, 4\), got Tensor of shape \(1, 2, 4\)"),
        "NaN mask_input": (dict(point_coords=point, point_labels=label, mask_input=torch.full((1, 1, low_res, low_res), float("nan"))),
                           rf"^mask_input: expected mask logits within \+-10000 .*{low_res * low_res} value\(s\) are not: NaN\."),
        "mask_input of size 1e25": (dict(point_coords=point, point_labels=label, mask_input=torch.full((1, 1, low_res, low_res), 1e25)),
                                    rf"^mask_input: expected mask logits within \+-10000 \(the model's own lie within about "
                                    rf"\+-100\), got Tensor .*{low_res * low_res} value\(s\) are not: the largest of size 1e\+25\."),
        "float64 box beyond float32": (dict(point_coords=None, point_labels=None, boxes=torch.tensor([[0, 0, 1e300, 1e300]], dtype=torch.float64)),
                                       r"^boxes: expected finite numbers \(no NaN or inf in float32\), got Tensor .*2 value\(s\) are not finite in float32\."),
        "float64 points beyond float32": (dict(point_coords=torch.tensor([[[1e300, 1.0]]], dtype=torch.float64), point_labels=label),
                                          r"^point_coords: expected finite numbers \(no NaN or inf in float32\), got Tensor .*1 value\(s\) are not finite in float32\."),
        "mask_input B=0": (dict(point_coords=None, point_labels=None, mask_input=torch.zeros(0, 1, low_res, low_res)),
                           r"^mask_input: expected at least one prompt \(B >= 1\), got a batch of 0\."),
        "a 0/1 mask_input": (dict(point_coords=point, point_labels=label, mask_input=torch.ones(1, 1, low_res, low_res)),
                             r"^mask_input: expected low-resolution mask logits, got Tensor .*It holds only 0s and 1s: a mask, not logits"),
        "integer mask_input": (dict(point_coords=point, point_labels=label, mask_input=torch.zeros(1, 1, low_res, low_res, dtype=torch.long)),
                               rf"^mask_input: expected a floating-point tensor of shape \(B, 1, {low_res}, {low_res}\)"),
        "points on another device": (dict(point_coords=point.to("meta"), point_labels=label),
                                     r"^point_coords: expected a tensor on the model's device cpu, got one on meta\. Move it"),
    }


@pytest.mark.parametrize("case", list(torch_prompt_errors(8)))
def test_bad_torch_prompts_get_the_checks_of_predict(predictor, low_res, case):
    kwargs, pattern = torch_prompt_errors(low_res)[case]
    message = error_message(lambda: predictor.predict_torch(**kwargs))
    assert re.search(pattern, message), message


def test_padding_label_minus_one_is_accepted_like_official(predictors, image):
    # Two prompts with one and two points share a batch: the first is padded with a point of label -1.
    ours, official = predictors
    coords = torch.tensor([[[200.0, 150.0], [0.0, 0.0]], [[200.0, 150.0], [400.0, 60.0]]])
    labels = torch.tensor([[1, -1], [1, 0]])
    results = []
    for predictor in (ours, official):
        transformed = predictor.transform.apply_coords_torch(coords, image.shape[:2])
        results.append([t.numpy() for t in predictor.predict_torch(transformed, labels, multimask_output=False)])
    assert_identical(*results)


# ---- predict_torch: prompts in the resized frame -----------------------------------------------------------------


def test_torch_points_in_the_original_images_pixels_are_refused(predictor, image):
    # The landscape (333 x 517) is 62 x 96 as the model sees it: a click at (200, 150) in its pixels gave a mask
    # of another place without a word.
    h, w = predictor.input_size
    coords = torch.tensor([[[20.0, 30.0]], [[200.0, 150.0]]])
    message = error_message(lambda: predictor.predict_torch(coords, torch.ones(2, 1)))
    assert message == (
        f"point_coords: expected points (x, y) in the resized frame (0 <= x <= {w}, 0 <= y <= {h}: the image as the "
        "model sees it), got 1 outside, e.g. [200.0, 150.0]. Are they in the original image's pixels? Map them with "
        "predictor.transform.apply_coords_torch(coords, original_size)."
    )
    message = error_message(lambda: predictor.predict_torch(torch.tensor([[[-2.0, 5.0]]]), torch.zeros(1, 1)))
    assert message.startswith("point_coords: expected points (x, y) in the resized frame")


def test_torch_boxes_in_the_original_images_pixels_are_refused(predictor):
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0], [300.0, 10.0, 510.0, 200.0]])
    message = error_message(lambda: predictor.predict_torch(None, None, boxes=boxes))
    assert message.startswith(f"boxes: expected boxes that overlap the resized frame (0 <= x <= {predictor.input_size[1]}, ")
    assert message.endswith("got 1 outside it, e.g. [300.0, 10.0, 510.0, 200.0]. Are they in the original image's "
                            "pixels? Map them with predictor.transform.apply_boxes_torch(boxes, original_size).")


def test_torch_prompts_on_the_frames_edge_padding_points_and_boxes_partly_outside_pass(predictors, image):
    ours, official = predictors
    H, W = image.shape[:2]
    corner = ours.transform.apply_coords_torch(torch.tensor([[[float(W), float(H)], [900.0, -40.0]]]), (H, W))
    labels = torch.tensor([[1, -1]])  # the second is padding: ignored by the model, wherever it lies
    box = torch.tensor([[50.0, 20.0, 300.0, 200.0]])  # partly outside, as predict's boxes may be
    results = [[t.numpy() for t in p.predict_torch(corner, labels, boxes=box, multimask_output=False)]
               for p in (ours, official)]
    assert_identical(*results)
    ours.predict(point_coords=np.array([[W, H], [0, 0]]), point_labels=np.array([1, 0]))  # predict maps them itself


def test_set_torch_image_converts_float64_pixels(official_tiny_random, image, predictor):
    # The model's float32 convolution refused them: "Input type (double) and bias type (float) should be the same".
    other = SamPredictor(official_tiny_random)
    resized = torch.as_tensor(other.transform.apply_image(image)).permute(2, 0, 1)[None]
    other.set_torch_image(resized.double(), image.shape[:2])
    torch.testing.assert_close(other.get_image_embedding(), predictor.get_image_embedding(), rtol=0, atol=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39, 1e25, -2e4], ids=["NaN", "inf", "beyond float32", "1e25", "-2e4"])
def test_predict_refuses_a_mask_input_that_is_not_finite_or_too_large(predictor, low_res, bad):
    """1e25 is finite, but logits of that size overflow the model's arithmetic: NaN scores, an empty mask."""
    mask = np.zeros((1, low_res, low_res), np.float64)
    mask[0, 2, 3] = bad
    message = error_message(lambda: predictor.predict(**POINT, mask_input=mask))
    assert message.startswith("mask_input: expected mask logits within +-10000 (the model's own lie within about "
                              f"+-100), got ndarray of shape (1, {low_res}, {low_res}) and dtype float64")
    assert "1 value(s) are not: " + ("NaN." if np.isnan(bad) else f"the largest of size {abs(bad):.3g}.") in message


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int64])
def test_predict_refuses_a_binary_mask_as_mask_input(predictor, low_res, dtype):
    """The official predictor takes a 0/1 mask as logits 0 and 1 ("unsure" and barely "in"): the mask grows."""
    _, _, logits = predictor.predict(**POINT, multimask_output=False)
    mask = (logits > 0).astype(dtype) * (255 if dtype is np.uint8 else 1) if dtype is not bool else logits > 0
    message = error_message(lambda: predictor.predict(**POINT, mask_input=mask))
    assert message == (f"mask_input: expected floating-point low-resolution logits, got ndarray of shape (1, {low_res}, "
                       f"{low_res}) and dtype {np.dtype(dtype).name}. A mask is not logits: logit 0 means 'unsure', not "
                       "'background'. Feed back a previous call's low_res_logits[i:i + 1].")


@pytest.mark.parametrize("dtype, top", [(np.float32, 1), (np.float64, 255)])
def test_a_binary_mask_in_floats_is_refused_as_mask_input_too(predictor, low_res, dtype, top):
    """The commonest form of the mistake: mask.astype(np.float32). The model's own logits are never only 0s and 1s."""
    _, _, logits = predictor.predict(**POINT, multimask_output=False)
    mask = (logits > 0).astype(dtype) * top
    expected = (f"mask_input: expected low-resolution mask logits, got ndarray of shape (1, {low_res}, {low_res}) and "
                f"dtype {np.dtype(dtype).name}. It holds only 0s and {top}s: a mask, not logits (logit 0 means "
                "'unsure', not 'background'). Feed back a previous call's low_res_logits[i:i + 1].")
    assert error_message(lambda: predictor.predict(**POINT, mask_input=mask)) == expected
    points = predictor.transform.apply_coords_torch(torch.as_tensor(POINT["point_coords"][None], dtype=torch.float32),
                                                     predictor.original_size)
    labels = torch.as_tensor(POINT["point_labels"][None])
    batch = torch.as_tensor(np.concatenate([logits, mask.astype(np.float32)]))[:, None].expand(2, 1, -1, -1)
    message = error_message(lambda: predictor.predict_torch(points.expand(2, -1, -1), labels.expand(2, -1),
                                                            mask_input=batch))  # the second of two masks
    assert message.startswith("mask_input: expected low-resolution mask logits, got Tensor of shape (2, 1, ")
    assert f"It holds only 0s and {top}s: a mask, not logits" in message
    masks, _, _ = predictor.predict(**POINT, mask_input=np.zeros_like(logits))  # all 0: 'unsure' everywhere, passes
    assert masks.shape[0] == 3


def test_mask_logits_up_to_the_limit_pass(predictor, low_res):
    mask = np.full((1, low_res, low_res), -1e4, np.float32)
    mask[0, :4, :4] = 1e4
    masks, scores, _ = predictor.predict(**POINT, mask_input=mask)
    assert np.isfinite(scores).all()


def test_predict_refuses_a_box_beyond_float32(predictor):
    message = error_message(lambda: predictor.predict(box=np.array([0.0, 0.0, 1e300, 1e300])))
    assert message.startswith("box: expected finite numbers (no NaN or inf in float32), got list [0.0, 0.0, 1e+300, 1e+300]")


def test_labels_as_a_list_and_mask_logits_as_a_tensor_work_as_in_the_official(predictors, low_res):
    ours, official = predictors
    logits = torch.as_tensor(np.random.default_rng(1).normal(size=(1, low_res, low_res)).astype(np.float32))
    prompt = dict(point_coords=np.array([[200.0, 150.0], [100.0, 40.0]]), point_labels=[1, 0], mask_input=logits)
    assert_identical(ours.predict(**prompt), official.predict(**prompt))


def test_a_numpy_matrix_is_an_image_like_its_array(official_tiny_random, image):
    gray = image[..., 0]
    predictor = SamPredictor(official_tiny_random)
    with warnings.catch_warnings():  # numpy discourages its matrix class; users still have them
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.asmatrix(gray)
    predictor.set_image(matrix)
    from_matrix = predictor.get_image_embedding()
    predictor.set_image(gray)
    assert torch.equal(from_matrix, predictor.get_image_embedding())


def test_predict_refuses_a_mask_input_of_text(predictor, low_res):
    message = error_message(lambda: predictor.predict(**POINT, mask_input=np.full((1, low_res, low_res), "x")))
    assert message == f"mask_input: expected floating-point low-resolution logits, got ndarray of shape (1, {low_res}, {low_res}) and dtype <U1."


@pytest.mark.parametrize(
    "model, pattern",
    [
        (None, r"^sam_model: expected a SAM model \(.*\), got NoneType None\.$"),
        ("vit_h", r"^sam_model: expected a SAM model .*got str 'vit_h'\. Build it first: sam_model_registry\['vit_h'\]"),
        ("weights/sam.pth", r"^sam_model: expected .*Build it first: from_pretrained\('weights/sam\.pth'\)"),
        (torch.nn.Linear(2, 2), r"^sam_model: expected a SAM model .*got Linear"),
    ],
    ids=["None", "a name", "a path", "another network"],
)
def test_predictor_of_something_that_is_not_a_model_is_refused(model, pattern):
    message = error_message(lambda: SamPredictor(model))
    assert re.search(pattern, message), message


def test_an_image_too_thin_to_resize_is_explained(official_tiny_random):
    size = official_tiny_random.image_encoder.img_size
    predictor = SamPredictor(official_tiny_random)
    message = error_message(lambda: predictor.set_image(np.zeros((1, 2 * size + 1, 3), np.uint8)))
    assert message.startswith(f"image: expected a long side at most {2 * size} times the short side")
    assert "this one would be 0 pixels high" in message
    message = error_message(lambda: predictor.set_image(np.zeros((4 * size, 1), np.uint8)))
    assert "this one would be 0 pixels wide" in message
    predictor.set_image(np.zeros((1, 2 * size, 3), np.uint8))  # the thinnest that still has a row
    assert predictor.input_size == (1, size)


@pytest.mark.parametrize("layout", ["flipped", "every other column", "Fortran order", "read-only"])
def test_non_contiguous_and_read_only_images_embed_like_their_copy(official_tiny_random, image, layout):
    small = image[:60, :90]
    if layout == "read-only":
        view = small.copy()
        view.flags.writeable = False
    else:
        view = {"flipped": small[::-1], "every other column": image[:60, :180:2],
                "Fortran order": np.asfortranarray(small)}[layout]
    torch.testing.assert_close(embedding_of(official_tiny_random, view),
                               embedding_of(official_tiny_random, np.ascontiguousarray(view)), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16], ids=["float64", "float16"])
def test_mask_input_of_another_float_dtype_is_converted(predictor, low_res, dtype):
    mask = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 1, low_res, low_res)).astype(np.float16))
    point, label = torch.tensor([[[20.0, 30.0]]]), torch.ones(1, 1, dtype=torch.int)
    expected = predictor.predict_torch(point, label, mask_input=mask.float())
    for mine, theirs in zip(predictor.predict_torch(point, label, mask_input=mask.to(dtype)), expected):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_bad_torch_image_values_are_explained(official_tiny_random):
    predictor = SamPredictor(official_tiny_random)
    size = official_tiny_random.image_encoder.img_size
    nan_image = torch.zeros(1, 3, size, size)
    nan_image[0, 1, 2, 3] = float("nan")
    message = error_message(lambda: predictor.set_torch_image(nan_image, (size, size)))
    assert message.startswith("transformed_image: expected finite values 0..255 (no NaN or inf)")
    message = error_message(lambda: predictor.set_torch_image(torch.zeros(1, 3, size, size, dtype=torch.bool), (size, size)))
    assert message.startswith("transformed_image: expected numbers 0..255, got Tensor of shape")
    message = error_message(lambda: predictor.set_torch_image(torch.zeros(1, 3, size, 0), (size, 1)))
    assert message.startswith(f"transformed_image: expected shape (1, 3, h, w) with max(h, w) == {size}")
    message = error_message(lambda: predictor.set_torch_image(torch.zeros(1, 3, size, size, device="meta"), (size, size)))
    assert message.startswith("transformed_image: expected a tensor on the model's device cpu, got one on meta")
    assert not predictor.is_image_set


@pytest.mark.parametrize("flag", ["multimask_output", "return_logits"])
@pytest.mark.parametrize("value", ["False", None, 0.5], ids=["text", "None", "a float"])
def test_switches_must_be_true_or_false(predictor, flag, value):
    message = error_message(lambda: predictor.predict(**POINT, **{flag: value}))
    assert message.startswith(f"{flag}: expected True or False, got")
    message = error_message(lambda: predictor.predict_torch(None, None, **{flag: value}))
    assert message.startswith(f"{flag}: expected True or False, got")


def test_numpy_booleans_and_0_1_are_switches_too(predictor):
    one_mask = predictor.predict(**POINT, multimask_output=False)
    assert one_mask[0].shape[0] == 1
    assert_identical(predictor.predict(**POINT, multimask_output=np.bool_(False)), one_mask)
    assert_identical(predictor.predict(**POINT, multimask_output=0), one_mask)
    assert predictor.predict(**POINT, multimask_output=np.True_)[0].shape[0] == 3
