"""The official example notebooks' calls, replayed on our package and on the official one, with the same weights.

Meta's predictor example: set an image; one click with three masks; two clicks refined with the best earlier
logits; a box; a box with a negative click; boxes through predict_torch; and `sam(batched_input)` over two
images. Its mask-generator example: the generator with its defaults, then with crops and stricter filters.
Calls that test_predictor_parity.py already replays (one click, box + negative click, boxes through predict_torch,
refining with labels [1, 0]) are not repeated here; this file adds the ones it leaves out.

Cost: the vit_b calls reuse the session's two embedded scene pictures (conftest.vit_b_predictors). The batched
`sam(batched_input)` call runs the image encoder on those same two pictures, so both models are handed the
embeddings already computed from exactly that input (the encoder's own parity is tested in tests/modeling); the
rest of the call (pre-processing, prompts, decoder, resizing) is theirs. The generator runs on the trained small
model at 96 pixels, with 16 points a side instead of 32: on vit_b the crops need four more encoder passes per
model, and even on the whole picture alone the masks' resizing takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator
from segment_anything.utils.transforms import ResizeLongestSide as OfficialResize
from test_predictor_parity import assert_outputs_close, at, box_at

from sam_from_scratch import SamAutomaticMaskGenerator
from sam_from_scratch.config import CONFIGS, TINY_CHECKPOINT
from sam_from_scratch.utils.transforms import ResizeLongestSide

# ---- the predictor example ---------------------------------------------------------------------------------


def test_two_positive_clicks_refined_with_the_best_earlier_logits(vit_b_predictors):
    image, ours, official = vit_b_predictors("landscape")
    results = []
    for predictor in (ours, official):
        _, scores, logits = predictor.predict(
            point_coords=at(image, (0.4, 0.45)), point_labels=np.array([1]), multimask_output=True
        )
        mask_input = logits[np.argmax(scores), :, :][None, :, :]  # (1, 256, 256), the example's indexing
        results.append(predictor.predict(
            point_coords=at(image, (0.4, 0.45), (0.7, 0.3)), point_labels=np.array([1, 1]),
            mask_input=mask_input, multimask_output=False,
        ))
    assert results[0][0].shape == (1, *image.shape[:2])
    assert_outputs_close(*results, "example: two positive clicks + mask_input (333x517)")


def test_a_box_given_as_one_row_without_points(vit_b_predictors):
    image, ours, official = vit_b_predictors("portrait")
    box = box_at(image, 0.2, 0.1, 0.8, 0.6)
    results = [
        predictor.predict(point_coords=None, point_labels=None, box=box[None, :], multimask_output=False)
        for predictor in (ours, official)
    ]
    assert_outputs_close(*results, "example: box[None, :] (517x333)")


@pytest.fixture
def encoders_answer_from_the_predictors(vit_b_predictors, ours_vit_b, official_vit_b, monkeypatch):
    """Both models' image encoders answer with the embeddings their predictors computed for the two pictures,
    after checking that each image they are given is exactly one of those pictures, pre-processed."""
    pictures = {name: vit_b_predictors(name) for name in ("landscape", "portrait")}
    for model, which in ((ours_vit_b, 1), (official_vit_b, 2)):
        known = []
        for picture in pictures.values():
            resized = picture[which].transform.apply_image(picture[0])
            known.append((
                model.preprocess(torch.as_tensor(resized).permute(2, 0, 1).contiguous()),  # (3, 1024, 1024)
                picture[which].get_image_embedding(),  # (1, 256, 64, 64)
            ))

        def encode(x, known=known):
            rows = []
            for row in x:
                found = [features for preprocessed, features in known if torch.equal(row, preprocessed)]
                assert found, "the encoder was given an image that is not one of the embedded pictures"
                rows.append(found[0])
            return torch.cat(rows)

        monkeypatch.setattr(model.image_encoder, "forward", encode)
    return pictures


def batched_input(pictures, transform, boxes_by_picture):
    batch = []
    for (image, *_), boxes in zip(pictures.values(), boxes_by_picture):
        resized = transform.apply_image(image)
        batch.append({
            "image": torch.as_tensor(resized).permute(2, 0, 1).contiguous(),  # (3, h, w) uint8
            "boxes": transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), image.shape[:2]),
            "original_size": image.shape[:2],
        })
    return batch


def test_sam_called_on_a_batch_of_two_pictures(encoders_answer_from_the_predictors, ours_vit_b, official_vit_b):
    pictures = encoders_answer_from_the_predictors
    boxes = [
        np.stack([box_at(image, 0.1, 0.1, 0.7, 0.8), box_at(image, 0.5, 0.2, 0.9, 0.6)])
        for image, *_ in pictures.values()
    ]
    ours = ours_vit_b(batched_input(pictures, ResizeLongestSide(1024), boxes), multimask_output=False)
    official = official_vit_b(batched_input(pictures, OfficialResize(1024), boxes), multimask_output=False)
    assert len(ours) == len(official) == 2
    for (name, (image, *_)), mine, theirs in zip(pictures.items(), ours, official):
        assert mine.keys() == theirs.keys() == {"masks", "iou_predictions", "low_res_logits"}
        assert mine["masks"].shape == (2, 1, *image.shape[:2])
        assert_outputs_close(
            *[tuple(out[k].numpy() for k in ("masks", "iou_predictions", "low_res_logits")) for out in (mine, theirs)],
            f"example: sam(batched_input), {name}",
        )


# ---- the mask-generator example ----------------------------------------------------------------------------

EXAMPLE_CROP_SETTINGS = dict(
    points_per_side=32, pred_iou_thresh=0.86, stability_score_thresh=0.92, crop_n_layers=1,
    crop_n_points_downscale_factor=2, min_mask_region_area=100,
)
POINTS_PER_SIDE = 16  # instead of the example's 32: a quarter of the cost, the same code paths


def assert_same_records(ours, official):
    """Same records in the same order, up to float rounding."""
    assert len(ours) == len(official)
    for mine, theirs in zip(ours, official):
        assert mine.keys() == theirs.keys()
        assert (mine["segmentation"] == theirs["segmentation"]).mean() >= 0.999
        assert mine["point_coords"] == theirs["point_coords"] and mine["crop_box"] == theirs["crop_box"]
        assert abs(mine["predicted_iou"] - theirs["predicted_iou"]) < 1e-5
        np.testing.assert_allclose(mine["stability_score"], theirs["stability_score"], atol=1e-3)
        assert np.abs(np.subtract(mine["bbox"], theirs["bbox"])).max() <= 2


@pytest.fixture(scope="module")
def small_models():
    from conftest import official_sam_for_config

    from sam_from_scratch import from_pretrained

    if not TINY_CHECKPOINT.exists():
        pytest.skip("the bundled small model is missing from sam_from_scratch/data/tiny")
    ours = from_pretrained("tiny", device="cpu")
    official = official_sam_for_config(CONFIGS["tiny"])
    official.load_state_dict(ours.state_dict())
    return ours, official.eval()


def fake_cv2():
    """OpenCV's connectedComponentsWithStats from scipy, for the official clean-up step (OpenCV is not installed)."""
    import types

    from scipy import ndimage

    def connectedComponentsWithStats(image, connectivity):
        assert connectivity == 8
        labels, count = ndimage.label(image, structure=np.ones((3, 3)))
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        stats = np.zeros((count + 1, 5), dtype=np.int64)
        stats[:, -1] = areas
        return count + 1, labels.astype(np.int32), stats, None

    return types.SimpleNamespace(connectedComponentsWithStats=connectedComponentsWithStats)


def scene(size=96):
    from sam_from_scratch.training.scenes import HELDOUT_SEED, SceneConfig, make_scene

    return make_scene(HELDOUT_SEED, 5, SceneConfig(image_size=size, min_objects=4, max_objects=5)).image


def blank(size=96):
    """A grey picture: nothing in it passes Meta's default filters (predicted IoU 0.88, stability 0.95)."""
    return np.full((size, size, 3), 128, dtype=np.uint8)


def test_generator_with_its_default_settings(small_models):
    # Meta's default filters keep few of the small model's masks (its card recommends looser ones): both
    # generators must keep the same ones, from the same 256 candidates.
    ours_model, official_model = small_models
    image = scene()
    ours = SamAutomaticMaskGenerator(ours_model, points_per_side=POINTS_PER_SIDE).generate(image)
    official = OfficialGenerator(official_model, points_per_side=POINTS_PER_SIDE).generate(image)
    assert len(official) >= 1  # something to compare: the next test covers the case where nothing passes
    assert_same_records(ours, official)


def test_where_the_default_settings_keep_nothing_both_answer_no_masks_and_ours_says_why(small_models):
    ours_model, official_model = small_models
    image = blank()
    with pytest.warns(UserWarning, match="card recommends"):  # ours also names the card's filters
        ours = SamAutomaticMaskGenerator(ours_model, points_per_side=POINTS_PER_SIDE).generate(image)
    official = OfficialGenerator(official_model, points_per_side=POINTS_PER_SIDE).generate(image)
    assert ours == [] and official == []


def test_generator_with_the_examples_crop_settings(small_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2())  # the official clean-up imports OpenCV
    ours_model, official_model = small_models
    settings = {**EXAMPLE_CROP_SETTINGS, "points_per_side": POINTS_PER_SIDE}
    image = scene()
    ours = SamAutomaticMaskGenerator(ours_model, **settings).generate(image)
    official = OfficialGenerator(official_model, **settings).generate(image)
    assert len(official) >= 1, "the comparison would be empty"
    assert_same_records(ours, official)


def test_where_no_crop_keeps_a_mask_the_official_generator_fails_and_ours_answers(small_models):
    # On a grey picture Meta's default filters keep none of the small model's masks, in any crop. The official
    # generator then computes crop-box areas on an empty (0,) column and raises IndexError; the answer is "no masks".
    ours_model, official_model = small_models
    settings = dict(points_per_side=8, crop_n_layers=1)
    image = blank()
    with pytest.raises(IndexError):
        OfficialGenerator(official_model, **settings).generate(image)
    with pytest.warns(UserWarning, match="card recommends"):
        assert SamAutomaticMaskGenerator(ours_model, **settings).generate(image) == []
