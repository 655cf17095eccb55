"""SamAutomaticMaskGenerator on bad input: every argument is checked when the generator is built, images
are checked by `generate`, and after a run `last_filter_counts` says where the candidates went.

Uses the stand-in model of test_amg.py (colour regions, no learning: milliseconds per image), and the
official Sam with the small config when the real decoder matters.
"""

import inspect
import re

import numpy as np
import pytest
from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator
from test_amg import ColourRegionSam

from sam_from_scratch import SamAutomaticMaskGenerator, SamPredictor
from sam_from_scratch.errors import SamInputError


@pytest.fixture(scope="module")
def stand_in():
    return ColourRegionSam().eval()


def error_message(call):
    with pytest.raises(SamInputError) as info:
        call()
    return str(info.value)


def test_defaults_are_the_official_ones():
    ours = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    official = inspect.signature(OfficialGenerator.__init__).parameters
    extra = {"dtype": "auto"}  # ours only: the image encoder's precision (tests/predictor/test_precision.py)
    assert {k: p.default for k, p in ours.items() if k not in extra} == {k: p.default for k, p in official.items()}
    assert {k: ours[k].default for k in extra} == extra


GRID = np.full((4, 2), 0.5)

BAD_ARGUMENTS = {
    "pred_iou_thresh above 1": (dict(pred_iou_thresh=1.5), r"^pred_iou_thresh: expected a number in \[0, 1\], got float 1\.5"),
    "pred_iou_thresh negative": (dict(pred_iou_thresh=-0.1), r"^pred_iou_thresh: expected a number in \[0, 1\]"),
    "pred_iou_thresh NaN": (dict(pred_iou_thresh=float("nan")), r"^pred_iou_thresh: expected a number in \[0, 1\], got float nan"),
    "pred_iou_thresh as text": (dict(pred_iou_thresh="0.8"), r"^pred_iou_thresh: expected a number in \[0, 1\], got str '0\.8'"),
    "stability_score_thresh above 1": (dict(stability_score_thresh=2), r"^stability_score_thresh: expected a number in \[0, 1\], got int 2"),
    "box_nms_thresh negative": (dict(box_nms_thresh=-0.5), r"^box_nms_thresh: expected a number in \[0, 1\]"),
    "crop_nms_thresh above 1": (dict(crop_nms_thresh=1.2), r"^crop_nms_thresh: expected a number in \[0, 1\]"),
    "negative stability_score_offset": (dict(stability_score_offset=-1.0), r"^stability_score_offset: expected a finite number >= 0, got float -1\.0"),
    "infinite stability_score_offset": (dict(stability_score_offset=float("inf")), r"^stability_score_offset: expected a finite number >= 0"),
    "negative min_mask_region_area": (dict(min_mask_region_area=-5), r"^min_mask_region_area: expected a finite number >= 0, got int -5"),
    "downscale factor 0": (dict(crop_n_points_downscale_factor=0), r"^crop_n_points_downscale_factor: expected a positive integer, got int 0"),
    "negative downscale factor": (dict(crop_n_points_downscale_factor=-2), r"^crop_n_points_downscale_factor: expected a positive integer"),
    "fractional downscale factor": (dict(crop_n_points_downscale_factor=1.5), r"^crop_n_points_downscale_factor: expected a positive integer, got float 1\.5"),
    "crop_overlap_ratio 2": (dict(crop_overlap_ratio=2.0, crop_n_layers=1), r"^crop_overlap_ratio: expected a number in \[0, 1\), got float 2\.0"),
    "crop_overlap_ratio 1": (dict(crop_overlap_ratio=1.0), r"^crop_overlap_ratio: expected a number in \[0, 1\)"),
    "negative crop_overlap_ratio": (dict(crop_overlap_ratio=-0.1), r"^crop_overlap_ratio: expected a number in \[0, 1\)"),
    "points_per_side 0": (dict(points_per_side=0), r"^points_per_side: expected a positive integer, got int 0"),
    "negative points_per_side": (dict(points_per_side=-4), r"^points_per_side: expected a positive integer"),
    "fractional points_per_side": (dict(points_per_side=8.5), r"^points_per_side: expected a positive integer, got float 8\.5"),
    "points_per_side as text": (dict(points_per_side="32"), r"^points_per_side: expected a positive integer, got str '32'"),
    "fractional points_per_batch": (dict(points_per_batch=1.5), r"^points_per_batch: expected a positive integer, got float 1\.5"),
    "negative points_per_batch": (dict(points_per_batch=-1), r"^points_per_batch: expected a positive integer"),
    "negative crop_n_layers": (dict(crop_n_layers=-1), r"^crop_n_layers: expected an integer >= 0, got int -1"),
    "fractional crop_n_layers": (dict(crop_n_layers=0.5), r"^crop_n_layers: expected an integer >= 0"),
    "point grid as a list of lists": (dict(points_per_side=None, point_grids=[[[0.5, 0.5]]]),
                                      r"^point_grids\[0\]: expected a numpy array of shape \(N, 2\).*got list"),
    "point grid of 3 columns": (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]),
                                r"^point_grids\[0\]: expected .*shape \(N, 2\).*got ndarray of shape \(4, 3\)"),
    "point grid of one point without its row axis": (dict(points_per_side=None, point_grids=[np.array([0.5, 0.5])]),
                                                     r"^point_grids\[0\]: expected .*shape \(N, 2\).*got ndarray of shape \(2,\)"),
    "empty point grid": (dict(points_per_side=None, point_grids=[np.zeros((0, 2))]),
                         r"^point_grids\[0\]: expected .*at least one point.*shape \(0, 2\)"),
    "point grid in pixels": (dict(points_per_side=None, point_grids=[np.array([[0.5, 0.5], [120.0, 30.0]])]),
                             r"^point_grids\[0\]: expected coordinates in \[0, 1\] \(fractions of the crop's width and height\), got .*120"),
    "point grid with NaN": (dict(points_per_side=None, point_grids=[np.array([[np.nan, 0.5]])]),
                            r"^point_grids\[0\]: expected coordinates in \[0, 1\].*nan"),
    "point grids for too few layers": (dict(points_per_side=None, point_grids=[GRID], crop_n_layers=1),
                                       r"^point_grids: expected a list of 2 grids \(one per crop layer, crop_n_layers \+ 1\), got list of 1"),
    "point grids not a list": (dict(points_per_side=None, point_grids=GRID),
                               r"^point_grids: expected a list of 1 grids .*got ndarray of shape \(4, 2\)"),
    "point grid of text": (dict(points_per_side=None, point_grids=[np.array([["a", "b"]])]),
                           r"^point_grids\[0\]: expected .*numbers"),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_are_refused_when_the_generator_is_built(stand_in, case):
    kwargs, pattern = BAD_ARGUMENTS[case]
    message = error_message(lambda: SamAutomaticMaskGenerator(stand_in, **kwargs))
    assert re.search(pattern, message), message


@pytest.mark.parametrize(
    "model, pattern",
    [
        (None, r"^model: expected a SAM model \(.*sam_model_registry.*\), got NoneType None"),
        ("vit_b", r"^model: expected a SAM model .*got str 'vit_b'\. Build it first: sam_model_registry\['vit_b'\]"),
        ({"image_encoder.pos_embed": 0}, r"^model: expected a SAM model .*got dict.*a state dict"),
    ],
    ids=["None", "a name", "a state dict"],
)
def test_something_that_is_not_a_model_is_refused(model, pattern):
    message = error_message(lambda: SamAutomaticMaskGenerator(model))
    assert re.search(pattern, message), message


def test_a_predictor_instead_of_its_model_says_which_to_pass(stand_in):
    message = error_message(lambda: SamAutomaticMaskGenerator(SamPredictor(stand_in)))
    assert message.startswith("model: expected a SAM model") and "predictor.model" in message


def test_an_enormous_plan_is_refused_with_its_size(stand_in):
    # crop_n_layers=10 with the default grid: sum of 4**i crops for i = 0..10, 16 batches of 64 points each
    crops = sum(4**i for i in range(11))
    assert crops == 1_398_101
    message = error_message(lambda: SamAutomaticMaskGenerator(stand_in, crop_n_layers=10))
    assert message.startswith("crop_n_layers: expected at most")
    assert "1,398,101 crops" in message and f"{crops * 16:,} decoder batches" in message
    assert f"{SamAutomaticMaskGenerator.MAX_PLANNED_CROPS:,} crops" in message
    message = error_message(lambda: SamAutomaticMaskGenerator(stand_in, crop_n_layers=10**9))
    assert message.startswith("crop_n_layers: expected at most")  # refused without building anything


def test_a_grid_too_dense_for_its_batches_is_refused_with_its_size(stand_in):
    message = error_message(lambda: SamAutomaticMaskGenerator(stand_in, points_per_side=4000, points_per_batch=1))
    assert message.startswith("points_per_side, points_per_batch: expected at most")
    assert "16,000,000 decoder batches" in message


def test_the_deepest_sensible_plans_are_accepted(stand_in):
    SamAutomaticMaskGenerator(stand_in, crop_n_layers=3)  # 85 crops, 1,360 batches
    SamAutomaticMaskGenerator(stand_in, points_per_side=None, point_grids=[GRID, GRID], crop_n_layers=1)


# ---- images ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 40)])
def test_crops_of_a_tiny_image_are_handled(stand_in, size):
    # Layer-1 crops of a 1 x 1 image have no pixels: they are skipped, not sent to the encoder.
    image = np.full((*size, 3), 200, np.uint8)
    calls = []
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=2, crop_n_layers=1, pred_iou_thresh=0.0,
                                          stability_score_thresh=0.0)
    records = generator.generate(image, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(r["segmentation"].shape == size for r in records)
    counts = generator.last_filter_counts
    assert counts["kept"] == len(records) and counts["candidates"] > 0


def test_an_image_too_thin_to_resize_is_explained(stand_in):
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=2)
    message = error_message(lambda: generator.generate(np.zeros((1, 5000, 3), np.uint8)))
    assert re.search(r"^image: expected .*would be 0 pixels high.*got ndarray of shape \(1, 5000, 3\)", message), message


def test_crops_too_thin_to_resize_are_refused_before_any_work(stand_in):
    """The whole image resizes, but crop_n_layers=2 cuts it into crops 1 pixel high: refused naming
    crop_n_layers before anything is embedded (it used to fail after the whole image, describing a crop)."""
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=2, crop_n_layers=2)
    target = generator.predictor.transform.target_length
    image = np.zeros((5, 10 * target - 1, 3), np.uint8)  # long side below 2 * target times the short one
    message = error_message(lambda: generator.generate(image))
    assert re.search(rf"^crop_n_layers: expected crops that resizing to a long side of {target} pixels leaves at "
                     rf"least one pixel across, got crop_n_layers=2, whose layer-2 crops of this {10 * target - 1}x5 "
                     r"image are \d+x1 pixels\. Use fewer crop layers for so thin an image\.$", message), message
    assert not generator.predictor.is_image_set
    SamAutomaticMaskGenerator(stand_in, points_per_side=2).generate(image)  # without crops it is fine


@pytest.mark.parametrize("layout, hint", [
    ("HWC", r"Pass image\.cpu\(\)\.numpy\(\) for an \(H, W, C\) tensor\.$"),
    ("CHW", r"Pass image\.permute\(1, 2, 0\)\.cpu\(\)\.numpy\(\) for a \(C, H, W\) tensor\.$"),
    ("1CHW", r"Pass image\[0\]\.permute\(1, 2, 0\)\.cpu\(\)\.numpy\(\) for a \(C, H, W\) tensor\.$"),
    ("HW", r"Pass image\.cpu\(\)\.numpy\(\) for a grey \(H, W\) tensor\.$"),
    ("HWC float", r"Pass image\.cpu\(\)\.numpy\(\) for an \(H, W, C\) tensor \(as uint8 values 0\.\.255\)\.$"),
])
def test_a_tensor_image_gets_a_hint_the_generator_can_follow(stand_in, layout, hint):
    """The predictor suggests set_torch_image for a tensor; the generator has none, so it says how to make the
    numpy array generate takes."""
    import torch

    image = torch.zeros(20, 30, 3, dtype=torch.uint8)
    image = {"HWC": image, "CHW": image.permute(2, 0, 1), "1CHW": image.permute(2, 0, 1)[None], "HW": image[..., 0],
             "HWC float": image.float()}[layout]
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=2)
    message = error_message(lambda: generator.generate(image))
    assert message.startswith("image: expected a numpy array of shape (H, W, 3) and dtype uint8, got Tensor of shape")
    assert re.search(hint, message) and "set_torch_image" not in message, message


@pytest.mark.parametrize("layout", ["flipped", "every other column", "Fortran order"])
def test_non_contiguous_images_give_the_records_of_their_copy(stand_in, scene_images, layout):
    image = scene_images["landscape"][:90, :120]
    view = {"flipped": image[::-1], "every other column": scene_images["landscape"][:90, :240:2],
            "Fortran order": np.asfortranarray(image)}[layout]
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ours = generator.generate(view)
    copied = generator.generate(np.ascontiguousarray(view))
    assert len(ours) == len(copied) > 0
    for a, b in zip(ours, copied):
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])


# ---- why nothing survived -----------------------------------------------------------------------------------

FILTERS = ("pred_iou_thresh", "stability_score_thresh", "crop_edge", "box_nms_thresh", "crop_nms_thresh",
           "min_mask_region_area")


def check_counts(counts, records):
    assert list(counts) == ["candidates", *FILTERS, "kept"]
    assert all(isinstance(v, int) and v >= 0 for v in counts.values())
    assert counts["kept"] == len(records)
    assert counts["candidates"] - sum(counts[f] for f in FILTERS) == counts["kept"]


def test_filter_counts_are_none_before_the_first_run(stand_in):
    assert SamAutomaticMaskGenerator(stand_in, points_per_side=4).last_filter_counts is None


def test_filter_counts_say_which_filter_removed_everything(stand_in, scene_images):
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4, pred_iou_thresh=0.999)
    records = generator.generate(scene_images["landscape"][:100, :150])
    assert records == []
    check_counts(generator.last_filter_counts, records)
    assert generator.last_filter_counts["candidates"] == 4 * 4 * 3
    assert generator.last_filter_counts["pred_iou_thresh"] == 4 * 4 * 3


def test_filter_counts_add_up_with_crops_and_clean_up(stand_in, scene_images):
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=8, crop_n_layers=1, min_mask_region_area=50,
                                          stability_score_thresh=0.8)
    records = generator.generate(np.ascontiguousarray(scene_images["portrait"][:160, :120]))
    counts = generator.last_filter_counts
    check_counts(counts, records)
    assert counts["candidates"] == (8 * 8 + 4 * 8 * 8) * 3
    for step in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_edge", "crop_nms_thresh"):
        assert counts[step] > 0, (step, counts)


def test_filter_counts_without_filters_count_every_mask(stand_in, scene_images):
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4, pred_iou_thresh=0.0,
                                          stability_score_thresh=0.0, box_nms_thresh=1.0)
    records = generator.generate(scene_images["landscape"][:100, :150])
    assert generator.last_filter_counts == {"candidates": 48, **{f: 0 for f in FILTERS}, "kept": 48} and len(records) == 48


# ---- record types equal the official ones --------------------------------------------------------------------


def type_tree(value):
    if isinstance(value, (list, tuple)):
        return [type_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: type_tree(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape)
    return type(value).__name__


# setting: (model fixture, (scene picture, height, width of its top-left corner), generator arguments)
TYPE_SETTINGS = {
    "one batch": ("stand_in", ("landscape", 200, 300), dict(points_per_side=8)),
    "batches, some empty": ("stand_in", ("landscape", 200, 300), dict(points_per_side=8, points_per_batch=5)),
    "crops": ("stand_in", ("landscape", 200, 300),
              dict(points_per_side=12, crop_n_layers=1, crop_n_points_downscale_factor=2)),
    "crops, RLE, no filters": ("stand_in", ("landscape", 200, 300),
                               dict(points_per_side=4, crop_n_layers=1, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                    output_mode="uncompressed_rle")),
    "a real decoder, crops": ("official_tiny_random", ("portrait", 120, 90),
                              dict(points_per_side=4, crop_n_layers=1, pred_iou_thresh=0.0, stability_score_thresh=0.0)),
}


@pytest.mark.parametrize("setting", TYPE_SETTINGS)
def test_record_types_equal_official(request, scene_images, setting):
    model_fixture, (picture, height, width), kwargs = TYPE_SETTINGS[setting]
    model = request.getfixturevalue(model_fixture)
    image = scene_images[picture][:height, :width]
    ours = SamAutomaticMaskGenerator(model, **kwargs).generate(image)
    official = OfficialGenerator(model, **kwargs).generate(image)
    assert len(ours) == len(official) > 0
    assert [type_tree(r) for r in ours] == [type_tree(r) for r in official]


def test_a_progress_that_cannot_be_called_is_refused_before_any_work(stand_in, scene_images):
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4)
    message = error_message(lambda: generator.generate(scene_images["landscape"][:50, :60], progress=5))
    assert message.startswith("progress: expected a function progress(done, total) or None, got int 5")
    assert generator.last_filter_counts is None
    for wrong in (lambda done: None, lambda: None, lambda done, total, extra: None):  # gave a TypeError mid-run
        message = error_message(lambda: generator.generate(scene_images["landscape"][:50, :60], progress=wrong))
        assert message.startswith("progress: expected a function progress(done, total) or None, got function")
    calls = []
    generator.generate(scene_images["landscape"][:50, :60], progress=lambda *counts: calls.append(counts))
    generator.generate(scene_images["landscape"][:50, :60], progress=lambda done, total, note="": None)
    assert calls and calls[-1][0] == calls[-1][1]


# ---- settings changed after the generator was made -----------------------------------------------------------

# attribute: a value the constructor refuses. Unchecked, generate would give RLE dicts for output_mode="mask", and
# fail deep inside for others (ZeroDivisionError, TypeError).
CHANGED_SETTINGS = {
    "output_mode": "mask",
    "points_per_batch": 0,
    "pred_iou_thresh": "0.5",
    "stability_score_thresh": 1.5,
    "stability_score_offset": -1.0,
    "box_nms_thresh": None,
    "crop_nms_thresh": float("nan"),
    "crop_overlap_ratio": 1.0,
    "min_mask_region_area": -5,
    "crop_n_points_downscale_factor": 0,
}


@pytest.mark.parametrize("name", CHANGED_SETTINGS)
def test_a_setting_changed_after_construction_is_refused_by_generate_as_the_constructor_refuses_it(
    stand_in, scene_images, name
):
    value = CHANGED_SETTINGS[name]
    refused_when_built = error_message(lambda: SamAutomaticMaskGenerator(stand_in, points_per_side=4, **{name: value}))
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    setattr(generator, name, value)
    calls = []
    message = error_message(lambda: generator.generate(scene_images["landscape"][:50, :60],
                                                       progress=lambda *counts: calls.append(counts)))
    assert message == refused_when_built and message.startswith(f"{name}: expected")
    assert calls == [] and generator.last_filter_counts is None and not generator.predictor.is_image_set


def test_a_changed_crop_n_layers_that_the_point_grids_no_longer_fit_is_named(stand_in, scene_images):
    image = scene_images["landscape"][:50, :60]
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4)
    generator.crop_n_layers = 1  # the grids were made for one layer: an IndexError inside, unchecked
    message = error_message(lambda: generator.generate(image))
    assert message == (
        "crop_n_layers: expected at most 0, one less than the 1 grid(s) in point_grids (one per crop layer, made "
        "for crop_n_layers=0), got 1. Make a new generator with crop_n_layers=1, or set point_grids to a list of 2 "
        "grids too."
    )
    generator.point_grids = [GRID]  # grids of the user's own: then it is they that do not fit
    message = error_message(lambda: generator.generate(image))
    assert message.startswith("point_grids: expected a list of 2 grids (one per crop layer, crop_n_layers + 1)")
    generator.crop_n_layers = 10**9  # refused before any per-layer arithmetic, as when built
    assert error_message(lambda: generator.generate(image)).startswith("crop_n_layers: expected at most")
    generator.crop_n_layers, generator.points_per_batch = 0, 1
    generator.point_grids = [np.full((200_000, 2), 0.5)]
    message = error_message(lambda: generator.generate(image))
    assert message.startswith("point_grids, points_per_batch: expected at most")


def test_fewer_crop_layers_than_the_grids_were_made_for_take_the_first_grids_as_the_official_generator_does(
        stand_in, scene_images):
    image = np.ascontiguousarray(scene_images["landscape"][:100, :150])
    settings = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, dtype="float32")
    lowered = SamAutomaticMaskGenerator(stand_in, crop_n_layers=1, **settings)
    lowered.crop_n_layers = 0  # the second grid goes unused
    expected = SamAutomaticMaskGenerator(stand_in, crop_n_layers=0, **settings).generate(image)
    got = lowered.generate(image)
    assert [r["bbox"] for r in got] == [r["bbox"] for r in expected] and len(got) > 0


def test_settings_changed_together_consistently_give_the_records_of_a_generator_built_with_them(stand_in, scene_images):
    from sam_from_scratch.utils.amg import build_all_layer_point_grids

    image = np.ascontiguousarray(scene_images["landscape"][:100, :150])
    settings = dict(crop_n_layers=1, points_per_batch=5, pred_iou_thresh=0.3, stability_score_thresh=0.0,
                    output_mode="uncompressed_rle")
    generator = SamAutomaticMaskGenerator(stand_in, points_per_side=4)
    for name, value in settings.items():
        setattr(generator, name, value)
    generator.point_grids = build_all_layer_point_grids(4, 1, 1)
    built = SamAutomaticMaskGenerator(stand_in, points_per_side=4, **settings)
    assert generator.generate(image) == built.generate(image) != []
