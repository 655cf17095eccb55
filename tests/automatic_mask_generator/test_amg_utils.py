"""The automatic generator's helpers, each against the official helper or an independent reference."""

import sys
import types

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask
from segment_anything.utils import amg as official

from sam_from_scratch.utils import amg as mask_utils
from sam_from_scratch.utils.amg import (
    MaskData,
    batched_mask_to_box,
    build_point_grid,
    box_xyxy_to_xywh,
    calculate_stability_score,
    label_connected_components,
    mask_to_rle_pytorch,
    remove_small_regions,
    rle_to_mask,
)


def random_masks(b, h, w, seed=0, density=0.5):
    return torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed)) < density


def blob_masks(b, h, w, seed=0):
    """Smooth random blobs (several regions, holes, islands), like real masks."""
    noise = torch.rand(b, 1, h // 8 + 1, w // 8 + 1, generator=torch.Generator().manual_seed(seed))
    smooth = torch.nn.functional.interpolate(noise, (h, w), mode="bicubic", align_corners=False)[:, 0]
    return smooth > 0.55


# ---- boxes, scores, grids, crops ---------------------------------------------------------------------------


def test_mask_boxes_equal_official_including_empty_masks():
    masks = blob_masks(6, 40, 70, seed=1)
    masks[2] = False
    masks[3] = False
    masks[3, 5, 9] = True  # a single pixel
    torch.testing.assert_close(batched_mask_to_box(masks), official.batched_mask_to_box(masks), rtol=0, atol=0)
    assert batched_mask_to_box(masks)[2].tolist() == [0, 0, 0, 0]
    assert batched_mask_to_box(masks)[3].tolist() == [9, 5, 9, 5]
    assert batched_mask_to_box(masks.reshape(2, 3, 40, 70)).shape == (2, 3, 4)


def test_stability_score_equals_official():
    logits = torch.randn(5, 30, 40) * 3
    for offset in (0.5, 1.0):
        torch.testing.assert_close(
            calculate_stability_score(logits, 0.0, offset), official.calculate_stability_score(logits, 0.0, offset)
        )


@pytest.mark.parametrize("n", [1, 4, 16, 32])
def test_point_grid_equals_official(n):
    np.testing.assert_array_equal(mask_utils.build_point_grid(n), official.build_point_grid(n))
    layers = 0 if n == 1 else 2
    for ours, theirs in zip(
        mask_utils.build_all_layer_point_grids(n, layers, 2), official.build_all_layer_point_grids(n, layers, 2)
    ):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("size", [(333, 517), (517, 333), (1500, 2250)])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_crop_boxes_equal_official(size, layers):
    assert mask_utils.generate_crop_boxes(size, layers, 512 / 1500) == official.generate_crop_boxes(size, layers, 512 / 1500)


def test_uncrop_helpers_equal_official():
    crop = [30, 40, 130, 100]
    boxes = torch.tensor([[1, 2, 10, 20], [0, 0, 99, 59]])
    points = torch.tensor([[1.5, 2.5]], dtype=torch.float64)
    masks = random_masks(2, 60, 100)
    torch.testing.assert_close(mask_utils.uncrop_boxes_xyxy(boxes, crop), official.uncrop_boxes_xyxy(boxes, crop))
    torch.testing.assert_close(mask_utils.uncrop_points(points, crop), official.uncrop_points(points, crop))
    torch.testing.assert_close(mask_utils.uncrop_masks(masks, crop, 150, 200), official.uncrop_masks(masks, crop, 150, 200))
    torch.testing.assert_close(
        mask_utils.is_box_near_crop_edge(boxes, crop, [0, 0, 200, 150]),
        official.is_box_near_crop_edge(boxes, crop, [0, 0, 200, 150]),
    )


# ---- run-length encoding -------------------------------------------------------------------------------------


def test_uncompressed_rle_equals_official_and_round_trips():
    masks = torch.cat([random_masks(3, 17, 23), blob_masks(3, 17, 23), torch.ones(1, 17, 23, dtype=torch.bool),
                       torch.zeros(1, 17, 23, dtype=torch.bool)])
    ours = mask_to_rle_pytorch(masks)
    assert ours == official.mask_to_rle_pytorch(masks)
    for rle, mask in zip(ours, masks):
        np.testing.assert_array_equal(rle_to_mask(rle), mask.numpy())
        assert mask_utils.area_from_rle(rle) == int(mask.sum())
    assert mask_to_rle_pytorch(torch.zeros(0, 5, 5, dtype=torch.bool)) == []


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools vs numpy 2
def test_rle_is_what_pycocotools_reads():
    mask = blob_masks(1, 31, 45, seed=2)[0]
    coco = mask_utils.coco_encode_rle(mask_to_rle_pytorch(mask[None])[0])
    assert coco == official.coco_encode_rle(official.mask_to_rle_pytorch(mask[None])[0])
    np.testing.assert_array_equal(coco_mask.decode(coco).astype(bool), mask.numpy())


def test_coco_rle_without_pycocotools_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        mask_utils.coco_encode_rle({"size": [1, 1], "counts": [1]})


# ---- connected components and clean-up --------------------------------------------------------------------


def reference_labels(mask: np.ndarray):
    """8-connected labels by brute force: every pixel takes the largest id among its 3x3 neighbours until
    nothing changes; then ids are renumbered 1..K in the order a row-by-row scan meets them (OpenCV's)."""
    h, w = mask.shape
    ids = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), 0)
    while True:
        padded = np.pad(ids, 1)
        neighbours = np.max([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
        new = np.where(mask, neighbours, 0)
        if np.array_equal(new, ids):
            break
        ids = new
    flat = ids.ravel()
    order = [v for v in dict.fromkeys(flat[flat > 0].tolist())]  # ids by first appearance
    renumber = np.zeros(h * w + 1, dtype=np.int64)
    renumber[order] = np.arange(1, len(order) + 1)
    labels = renumber[ids]
    return labels, np.bincount(labels.ravel(), minlength=len(order) + 1)[1:]


def spiral(n):
    mask = np.zeros((n, n), dtype=bool)
    top, left, bottom, right = 0, 0, n - 1, n - 1
    while top <= bottom and left <= right:
        mask[top, left : right + 1] = mask[top : bottom + 1, right] = True
        mask[bottom, left : right + 1] = mask[top + 2 : bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
    return mask


CC_CASES = {
    "noise": random_masks(1, 37, 53, seed=11)[0].numpy(),
    "sparse noise": random_masks(1, 40, 40, seed=12, density=0.2)[0].numpy(),
    "blobs": blob_masks(1, 64, 96, seed=13)[0].numpy(),
    "spiral": spiral(41),
    "diagonal touch": np.eye(6, dtype=bool) | np.eye(6, dtype=bool)[::-1],
    "empty": np.zeros((5, 7), dtype=bool),
    "full": np.ones((5, 7), dtype=bool),
}


@pytest.mark.parametrize("name", CC_CASES)
def test_connected_components_equal_a_brute_force_labelling(name):
    mask = CC_CASES[name]
    labels, areas = label_connected_components(mask)
    expected_labels, expected_areas = reference_labels(mask)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(areas, expected_areas)


def test_diagonal_neighbours_are_connected():
    labels, areas = label_connected_components(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=bool))
    assert areas.tolist() == [3]


def fake_cv2():
    """A stand-in for OpenCV's connectedComponentsWithStats (built on the brute-force labelling), so the
    official clean-up code can run here without OpenCV."""

    def connectedComponentsWithStats(image, connectivity):
        assert connectivity == 8
        labels, areas = reference_labels(image.astype(bool))
        stats = np.zeros((len(areas) + 1, 5), dtype=np.int64)
        stats[:, -1] = [int((labels == 0).sum()), *areas.tolist()]
        return len(areas) + 1, labels, stats, None

    return types.SimpleNamespace(connectedComponentsWithStats=connectedComponentsWithStats)


@pytest.mark.parametrize("mode", ["holes", "islands"])
@pytest.mark.parametrize("area", [1, 20, 200, 10_000])
@pytest.mark.parametrize("name", ["noise", "blobs", "spiral", "empty", "full"])
def test_small_region_removal_equals_official(monkeypatch, name, area, mode):
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2())
    mask = CC_CASES[name]
    ours, changed = remove_small_regions(mask, area, mode)
    expected, expected_changed = official.remove_small_regions(mask, area, mode)
    np.testing.assert_array_equal(ours, expected)
    assert changed == expected_changed


def test_small_islands_go_and_small_holes_fill():
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a one-pixel hole
    mask[16, 16] = True  # a one-pixel island
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[5, 5]
    cleaned, changed = remove_small_regions(filled, 5, "islands")
    assert changed and not cleaned[16, 16] and cleaned.sum() == 100


@pytest.mark.parametrize("mode", ["holes", "islands"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_small_region_removal_reads_0_1_integer_masks_as_booleans(dtype, mode):
    # ~ on 0/1 integers gives 255s and 254s, which would fill no hole or every one, without a word
    mask = CC_CASES["blobs"]
    given = mask.astype(dtype)
    kept = given.copy()
    ours, changed = remove_small_regions(given, 20, mode)
    expected, expected_changed = remove_small_regions(mask, 20, mode)
    assert ours.dtype == bool and changed == expected_changed
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(given, kept)  # the caller's mask is not changed


def test_bad_masks_areas_and_modes_of_the_clean_up_are_named():
    from sam_from_scratch.errors import SamInputError

    mask = CC_CASES["blobs"]
    expected = r"^mask: expected an \(H, W\) numpy array of bools \(or of integers 0 and 1\), got "
    cases = [
        (lambda: remove_small_regions(mask.astype(np.uint8) * 255, 20, "holes"),
         expected + r"ndarray of shape \(64, 96\) and dtype uint8\. Its values run from 0 to 255: .*pass mask > 0\.$"),
        (lambda: remove_small_regions(mask.astype(np.float32), 20, "holes"),
         expected + r"ndarray of shape \(64, 96\) and dtype float32\. Threshold it first: mask > 0"),
        (lambda: remove_small_regions(mask[None], 20, "islands"),
         expected + r"ndarray of shape \(1, 64, 96\) and dtype bool\. One mask\? Pass mask\[0\]\.$"),
        (lambda: remove_small_regions(np.stack([mask, mask]), 20, "islands"),
         expected + r"ndarray of shape \(2, 64, 96\) and dtype bool\. Pass one \(H, W\) mask at a time\.$"),
        (lambda: remove_small_regions(torch.from_numpy(mask), 20, "holes"),
         expected + r"Tensor .*Pass mask\.cpu\(\)\.numpy\(\)\.$"),
        (lambda: remove_small_regions(mask, -1, "holes"), r"^area_thresh: expected a finite number >= 0, got int -1"),
        (lambda: remove_small_regions(mask, "20", "holes"),
         r"^area_thresh: expected a finite number >= 0, got str '20'\.$"),
        (lambda: remove_small_regions(mask, 20, "hole"), r"^mode: expected one of 'holes', 'islands', got 'hole'\.$"),
        (lambda: label_connected_components(mask[None]), expected + r"ndarray of shape \(1, 64, 96\)"),
        (lambda: label_connected_components(mask.astype(np.uint8) * 255), expected + r".*pass mask > 0\.$"),
    ]
    for call, message in cases:  # named here, not by scipy ("structure and input must have equal rank") or not at all
        with pytest.raises(SamInputError, match=message):
            call()
    assert issubclass(SamInputError, ValueError)  # callers catching ValueError for a bad mode still catch it


@pytest.mark.parametrize(
    "args, message",
    [
        (((100, 150), -1, 0.3), r"^n_layers: expected an integer >= 0, got int -1\.$"),
        (((100, 150), 1.0, 0.3), r"^n_layers: expected an integer >= 0, got float 1\.0\.$"),
        (((100, 150), 1, 1.0), r"^overlap_ratio: expected a number in \[0, 1\), got float 1\.0\.$"),
        (((100, 150), 1, -0.1), r"^overlap_ratio: expected a number in \[0, 1\), got float -0\.1\.$"),
        (((100, 150), 1, "0.3"), r"^overlap_ratio: expected a number in \[0, 1\), got str '0\.3'\.$"),
        (((100, 150, 3), 1, 0.3), r"^im_size: expected \(H, W\), two integers >= 0, got tuple \(100, 150, 3\)\. "
                                  r"For an image array: image\.shape\[:2\]\.$"),
        (((100.5, 150), 1, 0.3), r"^im_size: expected \(H, W\), two integers >= 0, got tuple \(100\.5, 150\)"),
    ],
    ids=["negative layers", "float layers", "overlap 1", "negative overlap", "overlap as text", "image shape",
         "float size"],
)
def test_bad_crop_box_arguments_are_named(args, message):
    # unchecked, n_layers=-1 would give the whole image alone and overlap_ratio=1.5 crops left of the image
    from sam_from_scratch.errors import SamInputError

    with pytest.raises(SamInputError, match=message):
        mask_utils.generate_crop_boxes(*args)


def test_crop_boxes_take_the_sizes_an_image_has():
    image = np.zeros((100, 150, 3), np.uint8)
    expected = official.generate_crop_boxes((100, 150), 1, 0.3)
    assert mask_utils.generate_crop_boxes(image.shape[:2], 1, 0.3) == expected
    assert mask_utils.generate_crop_boxes(np.array(image.shape[:2]), np.int64(1), np.float32(0.3)) == expected


def test_bad_input_to_the_coco_encoder_and_the_batcher_is_named():
    from sam_from_scratch.errors import SamInputError

    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    cases = [
        (lambda: mask_utils.coco_encode_rle(masks.numpy()),  # not an IndexError from the dict look-up
         r"^uncompressed_rle: expected an uncompressed RLE .*got ndarray of shape \(2, 5, 6\) and dtype bool\. For a "
         r"mask, encode it first: mask_to_rle_pytorch\(torch\.as_tensor\(mask\)\[None\]\)\[0\]\.$"),
        (lambda: mask_utils.coco_encode_rle({"size": [5, 6], "counts": [3]}),  # pycocotools would encode it
         r"^uncompressed_rle: expected .* whose runs, whole numbers >= 0, cover H x W pixels, got dict"),
        (lambda: rle_to_mask(masks[0].numpy()), r"^rle: expected .*got ndarray of shape \(5, 6\)"),
        (lambda: list(mask_utils.batch_iterator(0, [1, 2])), r"^batch_size: expected a positive integer, got int 0\.$"),
        (lambda: list(mask_utils.batch_iterator(2)), r"^args: expected at least one sequence"),
        (lambda: list(mask_utils.batch_iterator(2, [1, 2], [1])), r"^args: expected sequences of one length"),
    ]
    for call, message in cases:
        with pytest.raises(SamInputError, match=message):
            call()


# ---- MaskData --------------------------------------------------------------------------------------------------


def test_mask_data_filters_and_joins_every_column_alike():
    data = MaskData(a=torch.arange(4), b=np.arange(4) * 10, c=["w", "x", "y", "z"])
    data.filter(torch.tensor([True, False, True, True]))
    data.cat(MaskData(a=torch.tensor([9]), b=np.array([90]), c=["q"]))
    data.filter(torch.tensor([3, 0]))
    assert data["a"].tolist() == [9, 0] and data["b"].tolist() == [90, 0] and data["c"] == ["q", "w"]
    with pytest.raises(TypeError, match="'d'"):
        data["d"] = 5


def test_joining_into_an_empty_table_copies_the_columns():
    # as the official MaskData does: the generator's table must not change when a batch's table is reused
    source = MaskData(a=torch.tensor([1]), b=np.array([2]), c=[[3.0, 4.0]])
    table = MaskData()
    table.cat(source)
    source["a"][0], source["b"][0], source["c"][0][0] = 9, 9, 9.0
    assert table["a"].tolist() == [1] and table["b"].tolist() == [2] and table["c"] == [[3.0, 4.0]]


@pytest.mark.parametrize("box", [[1, 2, 5, 7], np.array([1, 2, 5, 7]), torch.tensor([1, 2, 5, 7])],
                         ids=["list", "array", "tensor"])
def test_box_to_xywh_keeps_the_kind_of_box_like_official(box):
    ours, theirs = box_xyxy_to_xywh(box), official.box_xyxy_to_xywh(box)
    assert type(ours) is type(theirs) and list(ours) == list(theirs) == [1, 2, 4, 5]
    assert list(box) == [1, 2, 5, 7]  # a copy: the box given is unchanged


@pytest.mark.parametrize("shape", [(0, 40, 70), (3, 0, 70), (2, 3, 40, 0)])
def test_boxes_of_no_pixels_equal_official_including_their_dtype(shape):
    # The generator's records inherit this dtype: float boxes for a batch that kept no mask, as in the official.
    masks = torch.zeros(shape, dtype=torch.bool)
    torch.testing.assert_close(batched_mask_to_box(masks), official.batched_mask_to_box(masks), rtol=0, atol=0)


def test_bad_inputs_to_the_mask_helpers_are_named():
    from sam_from_scratch.errors import SamInputError

    masks = torch.zeros(2, 5, 6, dtype=torch.bool)
    compressed = coco_mask.encode(np.asfortranarray(masks[0].numpy().astype(np.uint8)))  # output_mode="coco_rle"
    cases = [
        (lambda: rle_to_mask(compressed), r"^rle: expected an uncompressed RLE .*compressed form \(output_mode='coco_rle'\): decode it with pycocotools\.mask\.decode"),
        (lambda: mask_utils.area_from_rle(compressed), r"^rle: .*compressed form"),
        (lambda: rle_to_mask({"size": [5, 6], "counts": [3, 4]}), r"^rle: expected .* whose runs, whole numbers >= 0, cover H x W pixels, got dict"),
        (lambda: rle_to_mask({"size": [1, 1], "counts": [0.5, 0.5]}), r"^rle: expected .* whose runs, whole numbers >= 0, cover"),
        (lambda: rle_to_mask({"size": [1, 1], "counts": np.array([0.0, 1.0])}), r"^rle: expected .* whole numbers"),
        (lambda: rle_to_mask({"size": [-1, -1], "counts": [1]}), r"^rle: expected .* cover H x W pixels"),
        (lambda: batched_mask_to_box(torch.randn(2, 5, 6)), r"^masks: expected a tensor of boolean masks .*torch\.float32\. Threshold logits first: masks > 0\.$"),
        (lambda: mask_to_rle_pytorch(masks.float()), r"^tensor: expected a tensor of boolean masks .*Threshold logits first"),
        (lambda: calculate_stability_score(masks, 0.0, 1.0), r"^masks: expected a tensor of mask logits .*torch\.bool\. Pass the logits, not masks"),
        (lambda: build_point_grid(0), r"^n_per_side: expected a positive integer, got int 0\.$"),
        (lambda: build_point_grid(2.5), r"^n_per_side: expected a positive integer, got float 2\.5\.$"),
        (lambda: box_xyxy_to_xywh([1, 2, 3]), r"^box_xyxy: expected one box \[x1, y1, x2, y2\], got list \[1, 2, 3\]\.$"),
        (lambda: mask_to_rle_pytorch(masks.numpy()), r"^tensor: expected a tensor of boolean masks \(B, H, W\), got ndarray .*Pass torch\.from_numpy\(masks\)\.$"),
        (lambda: mask_to_rle_pytorch(masks[0]), r"^tensor: .*got Tensor of shape \(5, 6\).*One mask\? Pass tensor\[None\]\.$"),
        (lambda: batched_mask_to_box(masks.numpy()), r"^masks: expected a tensor of boolean masks \(\.\.\., H, W\), got ndarray"),
        (lambda: calculate_stability_score(masks.float().numpy(), 0.0, 1.0), r"^masks: expected a tensor of mask logits"),
    ]
    for call, message in cases:  # the official helpers fail inside numpy and torch (reshape, .sum(dim=...))
        with pytest.raises(SamInputError, match=message):
            call()
