"""The data engine: generated scenes with exact instance masks, reproducible and split by seed."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from sam_from_scratch.training.scenes import (
    HELDOUT_SEED,
    KINDS,
    TRAIN_SEED,
    SceneConfig,
    SceneDataset,
    make_scene,
)

CONFIG = SceneConfig()


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(TRAIN_SEED, i) for i in range(60)]


def test_a_scene_has_an_rgb_image_and_boolean_masks_of_the_same_size():
    scene = make_scene(TRAIN_SEED, 0)
    S = CONFIG.image_size
    assert scene.image.shape == (S, S, 3) and scene.image.dtype == np.uint8
    assert scene.masks.ndim == 3 and scene.masks.shape[1:] == (S, S) and scene.masks.dtype == bool
    assert len(scene.masks) == len(scene.kinds) == len(scene.parents) >= 1


def test_the_same_seed_and_index_give_the_same_scene():
    a, b = make_scene(TRAIN_SEED, 7), make_scene(TRAIN_SEED, 7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)


def test_train_and_heldout_splits_differ():
    for i in range(5):
        assert not np.array_equal(make_scene(TRAIN_SEED, i).image, make_scene(HELDOUT_SEED, i).image)


def test_the_dataset_indexes_scenes_and_rejects_indices_out_of_range():
    data = SceneDataset(HELDOUT_SEED, length=3)
    assert len(data) == 3
    np.testing.assert_array_equal(data[2].image, make_scene(HELDOUT_SEED, 2).image)
    with pytest.raises(IndexError, match="index"):
        data[3]


def test_every_kind_of_object_occurs(scenes):
    counts = Counter(kind for scene in scenes for kind in scene.kinds)
    for kind in KINDS + ("part",):
        assert counts[kind] > 0, kind


def test_instances_are_large_enough_to_click_on(scenes):
    S = CONFIG.image_size
    for scene in scenes:
        assert (scene.masks.sum((1, 2)) >= CONFIG.min_area_fraction * S * S).all()


def test_a_part_lies_inside_its_whole(scenes):
    pairs = 0
    for scene in scenes:
        for i, parent in enumerate(scene.parents):
            if parent >= 0:
                pairs += 1
                assert scene.kinds[i] == "part" and scene.kinds[parent] == "nested"
                assert not (scene.masks[i] & ~scene.masks[parent]).any()
    assert pairs > 0


def test_objects_that_are_not_part_and_whole_do_not_overlap(scenes):
    # Occlusion: the visible pixels of two unrelated objects are disjoint.
    for scene in scenes:
        n = len(scene.masks)
        for i in range(n):
            for j in range(i + 1, n):
                if scene.parents[j] != i and scene.parents[i] != j:
                    assert not (scene.masks[i] & scene.masks[j]).any()


def test_some_objects_are_occluded(scenes):
    # A ring's hole or an occluder makes the visible mask smaller than its bounding shape: count masks whose
    # box is far from full. Ellipses fill ~79% of their box, so below 50% means holes, thin diagonals or occlusion.
    fill = []
    for scene in scenes:
        for mask in scene.masks:
            ys, xs = np.nonzero(mask)
            fill.append(mask.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
    assert np.mean(np.array(fill) < 0.5) > 0.1


def test_a_ring_has_a_hole(scenes):
    found = False
    for scene in scenes:
        for kind, mask in zip(scene.kinds, scene.masks):
            if kind == "ring":
                ys, xs = np.nonzero(mask)
                cy, cx = int(ys.mean().round()), int(xs.mean().round())
                found |= not mask[cy, cx]
    assert found


def test_objects_stand_out_from_the_background(scenes):
    # The mean colour inside an instance differs from the mean colour of a ring of pixels just outside it.
    contrasts = []
    for scene in scenes[:20]:
        image = scene.image.astype(float) / 255
        for mask in scene.masks:
            grown = mask.copy()
            for axis in (0, 1):
                grown |= np.roll(mask, 2, axis) | np.roll(mask, -2, axis)
            border = grown & ~scene.masks.any(0) if (grown & ~scene.masks.any(0)).any() else grown & ~mask
            if border.any():
                contrasts.append(np.linalg.norm(image[mask].mean(0) - image[border].mean(0)))
    assert np.median(contrasts) > 0.15


def test_smaller_images_can_be_generated():
    scene = make_scene(TRAIN_SEED, 0, SceneConfig(image_size=48))
    assert scene.image.shape == (48, 48, 3) and scene.masks.shape[1:] == (48, 48)
