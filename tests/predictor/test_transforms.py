"""ResizeLongestSide and the mapping of masks back: equal to the official transform, for any model size."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from segment_anything.modeling import Sam as OfficialSam
from segment_anything.utils.transforms import ResizeLongestSide as OfficialResize

from sam_from_scratch.utils.transforms import ResizeLongestSide, masks_to_original_size

SIZES = [(333, 517), (517, 333), (1, 1), (7, 2000), (1024, 1024), (100, 41), (3, 5)]
TARGETS = [1024, 256, 37]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("size", SIZES)
def test_preprocess_shape_rounds_like_the_official_transform(size, target):
    assert ResizeLongestSide.get_preprocess_shape(*size, target) == OfficialResize.get_preprocess_shape(*size, target)


def test_preprocess_shape_rounds_half_up():
    # 3 * (1024 / 5) = 614.4 -> 614, and 5 x 2 at 5: 2.5 -> 3 (Python's round() would give 2)
    assert ResizeLongestSide.get_preprocess_shape(3, 5, 1024) == (614, 1024)
    assert ResizeLongestSide.get_preprocess_shape(2, 4, 5) == (3, 5)


@pytest.mark.parametrize("target", [1024, 256])
@pytest.mark.parametrize("size", [(333, 517), (517, 333), (1, 1), (7, 2000)])
def test_apply_image_equals_official_pixel_for_pixel(size, target):
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    ours = ResizeLongestSide(target).apply_image(image)
    np.testing.assert_array_equal(ours, OfficialResize(target).apply_image(image))
    assert max(ours.shape[:2]) == target and ours.dtype == np.uint8


def test_apply_image_keeps_grayscale_and_alpha_layouts():
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    rgba = rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)
    transform = ResizeLongestSide(30)
    assert transform.apply_image(gray).shape == (20, 30)
    assert transform.apply_image(rgba).shape == (20, 30, 4)
    # each channel is resampled on its own: the RGB part equals resizing the RGB image
    np.testing.assert_array_equal(transform.apply_image(rgba)[..., :3], transform.apply_image(rgba[..., :3].copy()))


@pytest.mark.parametrize("size", [(333, 517), (517, 333)])
def test_apply_coords_and_boxes_equal_official_and_leave_input_alone(size):
    rng = np.random.default_rng(2)
    coords = rng.uniform(0, 300, (5, 2))
    boxes = np.sort(rng.uniform(0, 300, (3, 2, 2)), axis=1).reshape(3, 4)
    before = coords.copy()
    ours, official = ResizeLongestSide(1024), OfficialResize(1024)
    np.testing.assert_array_equal(ours.apply_coords(coords, size), official.apply_coords(coords, size))
    np.testing.assert_array_equal(ours.apply_boxes(boxes, size), official.apply_boxes(boxes, size))
    np.testing.assert_array_equal(coords, before)
    assert ours.apply_coords(np.array([[1, 2]]), size).dtype == np.float64


def test_torch_coords_and_boxes_equal_official():
    coords = torch.rand(2, 5, 2) * 500
    boxes = torch.tensor([[10.0, 20.0, 300.0, 310.0], [0.0, 0.0, 516.0, 332.0]])
    ours, official = ResizeLongestSide(1024), OfficialResize(1024)
    torch.testing.assert_close(ours.apply_coords_torch(coords, (333, 517)), official.apply_coords_torch(coords, (333, 517)), rtol=0, atol=0)
    torch.testing.assert_close(ours.apply_boxes_torch(boxes, (333, 517)), official.apply_boxes_torch(boxes, (333, 517)), rtol=0, atol=0)


def test_coordinates_survive_a_round_trip():
    coords = np.array([[0.0, 0.0], [516.0, 332.0], [123.4, 56.7]])
    transform = ResizeLongestSide(256)
    new_h, new_w = transform.get_preprocess_shape(333, 517, 256)
    scaled = transform.apply_coords(coords, (333, 517))
    np.testing.assert_allclose(scaled / [new_w / 517, new_h / 333], coords)


def test_apply_image_torch_resizes_height_and_width():
    # (The official version takes the size from the batch and channel axes instead.)
    image = torch.rand(2, 3, 333, 517) * 255
    resized = ResizeLongestSide(256).apply_image_torch(image)
    assert resized.shape == (2, 3, 165, 256)
    numpy_version = ResizeLongestSide(256).apply_image(image[0].permute(1, 2, 0).round().byte().numpy())
    assert (resized[0].permute(1, 2, 0) - torch.as_tensor(numpy_version).float()).abs().mean() < 1.0


@pytest.mark.parametrize("img_size, low_res", [(1024, 256), (256, 128)])
@pytest.mark.parametrize("original_size", [(333, 517), (517, 333), (400, 600), (1024, 1024), (3, 5), (7, 2000), (1500, 1501)])
def test_masks_are_mapped_back_like_official_postprocess_masks(img_size, low_res, original_size):
    logits = torch.randn(2, 3, low_res, low_res)
    input_size = ResizeLongestSide.get_preprocess_shape(*original_size, img_size)
    fake_sam = SimpleNamespace(image_encoder=SimpleNamespace(img_size=img_size))
    expected = OfficialSam.postprocess_masks(fake_sam, logits, input_size, original_size)
    ours = masks_to_original_size(logits, input_size, original_size, img_size)
    assert ours.shape == (2, 3, *original_size)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


@pytest.mark.parametrize("call, message", [
    (lambda t: t.apply_image(np.zeros((3, 50, 40), np.uint8)), r"^image: expected a numpy array \(H, W\) or \(H, W, C\) .*Channels first\? Pass image\.transpose\(1, 2, 0\)\.$"),
    (lambda t: t.apply_image(torch.zeros(1, 3, 5, 5)), r"^image: .*use apply_image_torch\.$"),
    (lambda t: t.apply_coords(np.array([1, 2, 3]), (50, 40)), r"^coords: expected an array \(\.\.\., 2\) of \(x, y\) coordinates, got ndarray of shape \(3,\)"),
    (lambda t: t.apply_coords([["a", "b"]], (50, 40)), r"^coords: expected an array \(\.\.\., 2\)"),
    (lambda t: t.apply_coords([[1, 2]], (0, 40)), r"^original_size: expected an image size \(H, W\) of two integers >= 1, got tuple \(0, 40\)\.$"),
    (lambda t: t.apply_boxes([[1, 2, 3]], (50, 40)), r"^boxes: expected an array \(\.\.\., 4\) of boxes \(x1, y1, x2, y2\), got list \[\[1, 2, 3\]\]\.$"),
    (lambda t: t.apply_boxes(torch.zeros(1, 4), (50, 40)), r"^boxes: .*use apply_boxes_torch\.$"),
    (lambda t: t.apply_coords_torch(np.zeros((1, 2)), (50, 40)), r"^coords: expected a tensor \(\.\.\., 2\) .*use apply_coords\.$"),
    (lambda t: t.apply_boxes_torch(torch.zeros(1, 3), (50, 40)), r"^boxes: expected a tensor \(\.\.\., 4\)"),
    (lambda t: t.get_preprocess_shape(0, 0, 96), r"^oldh, oldw: expected an image size \(H, W\) of two integers >= 1, got tuple \(0, 0\)\.$"),
    (lambda t: t.get_preprocess_shape(float("inf"), 3, 96), r"^oldh, oldw: expected an image size \(H, W\) of two integers >= 1, got tuple \(inf, 3\)\.$"),
    (lambda t: ResizeLongestSide(0), r"^target_length: expected a positive integer, got int 0\.$"),
    (lambda t: ResizeLongestSide("96"), r"^target_length: expected a positive integer, got str '96'\.$"),
    (lambda t: t.apply_image(np.zeros((50, 40, 3), np.int64)), r"^image: expected an array of dtype uint8, got ndarray of shape \(50, 40, 3\) and dtype int64\. Its values lie in 0\.\.255: use image\.astype\(np\.uint8\)\.$"),
    (lambda t: t.apply_image(np.zeros((50, 40, 3))), r"^image: expected an array of dtype uint8, .*float64\. For floats in \[0, 1\] use \(image \* 255\)"),
    (lambda t: t.apply_image(np.zeros((50, 40, 0), np.uint8)), r"^image: expected an image with at least one pixel \(and one channel\)"),
    (lambda t: t.apply_image(np.zeros((1, 500, 3), np.uint8)), r"^image: expected a long side at most 192 times the short side .*0 pixels high\), got ndarray of shape \(1, 500, 3\)"),
    (lambda t: t.apply_image_torch(torch.zeros(1, 60, 80, 3)), r"^image: expected a tensor of shape \(B, C, H, W\) with at most 4 channels, got Tensor of shape \(1, 60, 80, 3\) .*It looks channels-last: use \.permute\(0, 3, 1, 2\)\.$"),
    (lambda t: t.apply_image_torch(np.zeros((1, 3, 60, 80))), r"^image: expected a tensor of shape \(B, C, H, W\) .*got ndarray.*For a numpy \(H, W, C\) image use apply_image\.$"),
    (lambda t: t.apply_image_torch(torch.zeros(3, 60, 80)), r"^image: expected a tensor of shape \(B, C, H, W\) .*For one image add the batch axis: image\[None\]\.$"),
    (lambda t: t.apply_image_torch(torch.zeros(1, 3, 1, 500)), r"^image: expected a long side at most 192 times the short side"),
    (lambda t: t.apply_image_torch(torch.zeros(1, 3, 60, 80, dtype=torch.bool)), r"^image: expected a floating-point \(or uint8\) tensor, got Tensor .*torch\.bool\.$"),
    (lambda t: t.get_preprocess_shape(10, 20, 0), r"^long_side_length: expected a positive integer, got int 0\.$"),
    (lambda t: t.get_preprocess_shape(10, 20, 96.5), r"^long_side_length: expected a positive integer, got float 96\.5\.$"),
    (lambda t: t.apply_coords(np.array([[1.0, 2.0]]), (True, True)), r"^original_size: expected an image size \(H, W\) of two integers >= 1, got tuple \(True, True\)\.$"),
], ids=["channels first", "a tensor image", "coords of 3", "coords of text", "original size 0", "boxes of 3",
        "tensor boxes to numpy", "numpy coords to torch", "torch boxes of 3", "empty image size", "infinite image size",
        "target 0", "target text", "int64 image", "float image", "no channels", "too thin", "torch channels last",
        "numpy to torch", "torch without batch", "torch too thin", "torch bool", "long side 0", "long side 96.5",
        "boolean size"])
def test_bad_arguments_are_named_instead_of_failing_inside_numpy(call, message):
    # The official class resizes a channels-first image along the wrong axes and scales 3-vectors without a word.
    with pytest.raises(ValueError, match=message):
        call(ResizeLongestSide(96))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_apply_image_torch_takes_half_precision_on_a_cpu(dtype):
    image = torch.rand(1, 3, 60, 80) * 255
    resized = ResizeLongestSide(32).apply_image_torch(image.to(dtype))
    assert resized.dtype == dtype and resized.shape == (1, 3, 24, 32)
    expected = ResizeLongestSide(32).apply_image_torch(image.to(dtype).float())
    torch.testing.assert_close(resized.float(), expected.to(dtype).float())


def test_an_original_size_given_as_a_tensor_or_numpy_integers_scales_as_a_tuple():
    transform, coords = ResizeLongestSide(96), np.array([[10.0, 20.0]])
    expected = transform.apply_coords(coords, (50, 40))
    np.testing.assert_array_equal(transform.apply_coords(coords, torch.tensor([50, 40])), expected)
    np.testing.assert_array_equal(transform.apply_coords(coords, np.array([50, 40])), expected)
