"""Bad input to the training helpers: evaluate, the scene generator, the simulated clicks and train_tiny.

Every case is refused at the public call with a SamInputError naming the argument, before any work is done."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

import sam_from_scratch.training.scenes as scenes
from sam_from_scratch.build import build_sam
from sam_from_scratch.config import CONFIGS
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.predictor import SamPredictor
import sam_from_scratch.training.tiny as tiny_module
from sam_from_scratch.training import SceneConfig, SceneDataset, evaluate, make_scene, train_tiny
from sam_from_scratch.training.prompts import center_error_clicks, random_points_in, sample_error_clicks
from sam_from_scratch.training.tiny import CARD_NAME, TINY_DIR
from sam_from_scratch.training.stars import STAR_SEED, make_star_scene


@pytest.fixture(scope="module")
def tiny():
    return build_sam(CONFIGS["tiny"]).eval()  # random weights: only the checks run


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(num_scenes=0), r"^num_scenes: expected a positive integer, got int 0\."),
        (dict(num_scenes=2.0), r"^num_scenes: expected a positive integer, got float 2\.0\."),
        (dict(seed=-1), r"^seed: expected an integer >= 0, got int -1\."),
        (dict(first_scene=-1), r"^first_scene: expected an integer >= 0, got int -1\."),
        (dict(clicks=0), r"^clicks: expected 1, 2 or 3 \(clicks per object; .*\), got int 0\."),
        (dict(clicks=5), r"^clicks: expected 1, 2 or 3 \(clicks per object; .*three_clicks_miou\), got int 5\."),
        (dict(progress="no"), r"^progress: expected True or False, got str 'no'\."),
        (dict(scene_config={"image_size": 96}), r"^scene_config: expected a SceneConfig or None, got dict"),
        (
            dict(scene_config=SceneConfig(image_size=128)),
            r"^scene_config: expected image_size 96 \(the model's image size\), got image_size 128\. "
            r"Pass SceneConfig\(image_size=96, \.\.\.\), or leave scene_config out\.",
        ),
    ],
)
def test_evaluate_refuses_bad_arguments(tiny, arguments, message):
    with pytest.raises(SamInputError, match=message):
        evaluate(tiny, **{"num_scenes": 1, **arguments})


def test_evaluate_takes_seeds_longer_than_64_bits(tiny):
    """A seed mixed with the scene's index went straight to torch.Generator, which takes 64 bits ("Overflow when
    unpacking long long" from seed 9e12 on). Seeds below 2**64 draw what they always drew."""
    from sam_from_scratch.training.prompts import seeded_generator

    for seed, first_scene in [(2**70, 0), (10**13, 2**70)]:
        figures = evaluate(tiny, num_scenes=1, seed=seed, first_scene=first_scene, progress=False)
        assert figures["num_scenes"] == 1 and 0 <= figures["single_click_miou"] <= 1
    assert torch.equal(seeded_generator(12345).get_state(), torch.Generator().manual_seed(12345).get_state())


def test_evaluate_refuses_what_is_not_a_model(tiny):
    with pytest.raises(SamInputError, match=r"^model: expected a SAM model .*got SamPredictor .*predictor\.model\."):
        evaluate(SamPredictor(tiny), num_scenes=1)
    with pytest.raises(SamInputError, match=r"^model: expected a SAM model .*got str 'tiny'\. .*from_pretrained\('tiny'\)"):
        evaluate("tiny", num_scenes=1)


# ---------------------------------------------------------------------------------------------------------
# The scene generator: SceneConfig checks its fields; make_scene and SceneDataset their arguments
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(min_objects=0, max_objects=0), r"^min_objects: expected a positive integer, got int 0\."),  # RecursionError
        (dict(min_objects=5, max_objects=3), r"^max_objects: expected at least min_objects \(5\), got 3\."),
        (dict(kind_weights=(1, 0, 0, 0, 0)), r"^kind_weights: expected 6 weights >= 0, not all 0, in the order \('ellipse', .*got tuple \(1, 0, 0, 0, 0\)\."),
        (dict(kind_weights=(0,) * 6), r"^kind_weights: expected 6 weights >= 0, not all 0"),
        (dict(kind_weights=(1, -0.5, 0, 0, 0, 0.5)), r"^kind_weights: expected 6 weights >= 0"),
        (dict(min_radius=0.5, max_radius=0.1), r"^max_radius: expected at least min_radius \(0\.5\), got 0\.1\."),
        (dict(max_noise=-1), r"^max_noise: expected a finite number >= 0, got int -1\."),
        (dict(image_size=0), r"^image_size: expected a positive integer, got int 0\."),  # gave empty masks
        (dict(image_size=96.0), r"^image_size: expected a positive integer, got float 96\.0\."),
        (dict(texture_prob=2), r"^texture_prob: expected a number in \[0, 1\], got int 2\."),
        (dict(part_scale=(0.6, 0.4)), r"^part_scale: expected a pair \(low, high\) of numbers > 0 with low <= high"),
    ],
)
def test_a_scene_config_that_cannot_draw_scenes_is_refused_naming_the_field(fields, message):
    with pytest.raises(SamInputError, match=message):
        SceneConfig(**fields)


def test_the_shipped_scene_configs_still_pass():
    card = json.loads((TINY_DIR / CARD_NAME).read_text())
    from_card = SceneConfig(**card["scene_config"])  # JSON lists become tuples again
    assert from_card == SceneConfig() and hash(from_card) == hash(SceneConfig())
    for fields in (dict(image_size=96, min_objects=4, max_objects=5), dict(image_size=160, min_objects=3, max_objects=4),
                   dict(image_size=48)):  # the notebooks', the tests'
        assert len(make_scene(0, 0, SceneConfig(**fields)).masks) >= 1


def test_make_scene_and_scene_dataset_refuse_bad_arguments():
    for call, message in [
        (lambda: make_scene(-1, 0), r"^seed: expected an integer >= 0, got int -1\."),
        (lambda: make_scene(0, -1), r"^index: expected an integer >= 0, got int -1\."),
        (lambda: make_scene(0.5, 0), r"^seed: expected an integer >= 0, got float 0\.5\."),
        (lambda: make_scene(0, 0, 64), r"^config: expected a SceneConfig, got int 64\. For an image size pass SceneConfig\(image_size=64\)\."),
        (lambda: make_scene(0, 0, {"image_size": 64}), r"^config: expected a SceneConfig, got dict .*SceneConfig\(\*\*config\)"),
        (lambda: make_star_scene(-1, 0), r"^seed: expected an integer >= 0, got int -1\."),
        (lambda: make_star_scene(STAR_SEED, 1.5), r"^index: expected an integer >= 0, got float 1\.5\."),
        (lambda: make_star_scene(STAR_SEED, 0, 64), r"^config: expected a SceneConfig, got int 64\."),
        (lambda: SceneDataset(length=-1), r"^length: expected a positive integer, got int -1\."),
        (lambda: SceneDataset(seed=-1), r"^seed: expected an integer >= 0, got int -1\."),
        (lambda: SceneDataset(length=5)[1.0], r"^index: expected an integer from 0 to 4, got float 1\.0\."),
    ]:
        with pytest.raises(SamInputError, match=message):
            call()
    assert make_scene(0, 0).masks.shape == SceneDataset(length=5)[np.int64(0)].masks.shape
    assert make_star_scene(STAR_SEED, np.int64(0)).masks.shape[1:] == make_scene(0, 0).masks.shape[1:]
    assert len(list(SceneDataset(length=2))) == 2  # iteration still stops at the IndexError past the end


def test_a_config_that_leaves_no_object_visible_is_named_not_a_recursion_error(monkeypatch):
    monkeypatch.setattr(scenes, "MAX_ATTEMPTS", 3)
    with pytest.raises(SamInputError, match=r"^config: expected settings that leave an object visible, got no visible "
                                            r"object in 3 scenes \(min_area_fraction=1, .*Lower the fractions\."):
        make_scene(0, 0, SceneConfig(min_area_fraction=1.0))


# ---------------------------------------------------------------------------------------------------------
# The simulated clicks: (N, H, W) bool masks, or 0/1 masks of another dtype
# ---------------------------------------------------------------------------------------------------------
def test_random_points_in_refuses_one_mask_of_shape_h_w():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[6, 6] = True
    with pytest.raises(SamInputError, match=re.escape(
        "masks: expected a torch.Tensor of N masks, shape (N, H, W), got Tensor of shape (8, 8) and dtype torch.bool. "
        "For one mask pass it as mask[None]."
    )):
        random_points_in(mask, torch.Generator().manual_seed(0))  # read each row as a mask
    assert random_points_in(mask[None], torch.Generator().manual_seed(0)).tolist() == [[6.0, 6.0]]
    with pytest.raises(SamInputError, match=r"^generator: expected a torch.Generator, .*got int 0\."):
        random_points_in(mask[None], 0)


def test_error_clicks_take_zero_one_masks_of_any_dtype_and_refuse_logits():
    truth = torch.zeros(2, 8, 8, dtype=torch.bool)
    truth[:, 2:6, 2:6] = True
    pred = torch.zeros_like(truth)
    expected = center_error_clicks(pred, truth)
    for got in (center_error_clicks(pred.float(), truth.float()), center_error_clicks(pred.to(torch.uint8), truth.long())):
        assert [t.tolist() for t in got] == [t.tolist() for t in expected]
    xy, labels = sample_error_clicks(pred.float(), truth.float(), torch.Generator().manual_seed(0))
    assert (labels == 1).all()
    logits = torch.randn(2, 8, 8)
    with pytest.raises(SamInputError, match=r"^pred: expected bool masks \(or values 0 and 1\), got Tensor of shape "
                                            r"\(2, 8, 8\) and dtype torch.float32\. Threshold them first: logits > 0"):
        center_error_clicks(logits, truth)
    with pytest.raises(SamInputError, match=r"^truth: expected bool masks"):
        sample_error_clicks(pred, truth.float() * 255, torch.Generator().manual_seed(0))
    with pytest.raises(SamInputError, match=re.escape("pred: expected the shape of truth (2, 8, 8), got (2, 4, 8).")):
        sample_error_clicks(pred[:, :4], truth, torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------------------
# train_tiny: its arguments are checked before anything is trained or written
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(steps="2"), r"^steps: expected a positive integer, got str '2'\."),
        (dict(steps=1.5), r"^steps: expected a positive integer, got float 1\.5\."),
        (dict(threads=1.5), r"^threads: expected a positive integer, got float 1\.5\."),
        (dict(workers=True), r"^workers: expected a positive integer, got bool True\."),
        (dict(eval_scenes=0), r"^eval_scenes: expected a positive integer, got int 0\."),
        (dict(seed=-1), r"^seed: expected an integer >= 0, got int -1\."),
        (dict(fresh="no"), r"^fresh: expected True or False, got str 'no'\."),
        (dict(work_dir=5), r"^work_dir: expected a folder path \(a str or a Path\), got int 5\."),
    ],
)
def test_train_tiny_refuses_bad_arguments_before_it_trains(tmp_path, monkeypatch, arguments, message):
    def must_not_train(*args):
        raise AssertionError("trained with a bad argument")

    monkeypatch.setattr(tiny_module, "_train_and_write", must_not_train)
    with pytest.raises(SamInputError, match=message):
        train_tiny(tmp_path / "out", **{"steps": 1, "workers": 1, "threads": 1, "progress": False, **arguments})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SamInputError, match=r"^out: expected a folder path \(a str or a Path\), got NoneType None\."):
        train_tiny(None, steps=1, workers=1, threads=1, progress=False)


def test_train_tiny_takes_numpy_integers_as_plain_ones(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(tiny_module, "_train_and_write", lambda *args: calls.append(args) or {})
    train_tiny(tmp_path / "out", steps=np.int64(2), seed=np.int64(1), workers=np.int32(1), threads=np.int64(1),
               eval_scenes=np.int64(2), progress=False)
    ((out, cfg, work_dir, workers, threads, fresh, eval_scenes, progress),) = calls
    assert (cfg.steps, cfg.seed, workers, threads, eval_scenes) == (2, 1, 1, 1, 2)
    assert all(type(v) is int for v in (cfg.steps, cfg.seed, workers, threads, eval_scenes))  # the card is JSON
