"""Bad input to the training helpers: evaluate, the scene generator, the simulated clicks, train_tiny, the
recipe and train, the losses, and the dataset writer.

Every case is refused at the public call with a SamInputError naming the argument, before any work is done."""

from __future__ import annotations

import dataclasses
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
from sam_from_scratch.training import (
    SceneConfig,
    SceneDataset,
    TrainConfig,
    dice_loss,
    evaluate,
    make_scene,
    mask_iou,
    sigmoid_focal_loss,
    train,
    train_tiny,
)
from sam_from_scratch.training.datasets import encode_rle, save_folder_dataset
from sam_from_scratch.training.prompts import (
    center_error_clicks,
    jitter_boxes,
    low_res_to_input,
    random_points_in,
    sample_error_clicks,
)
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


# ---------------------------------------------------------------------------------------------------------
# The recipe, train's arguments, the losses and prompt helpers, the dataset writer
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(images_per_step=0), r"^images_per_step: expected a positive integer, got int 0\."),  # numpy's stack
        (dict(prompts_per_image=0), r"^prompts_per_image: expected a positive integer, got int 0\."),  # torch.cat
        (dict(clicks=0), r"^clicks: expected a positive integer, got int 0\."),
        (dict(save_every=0), r"^save_every: expected a positive integer, got int 0\."),  # ZeroDivisionError
        (dict(log_every=0), r"^log_every: expected a positive integer, got int 0\."),
        (dict(steps=2.5), r"^steps: expected a positive integer, got float 2\.5\."),
        (dict(warmup_steps=-1), r"^warmup_steps: expected an integer >= 0, got int -1\."),
        (dict(box_fraction=2.0), r"^box_fraction: expected a number in \[0, 1\], got float 2\.0\."),  # trained
        (dict(lr=-1.0), r"^lr: expected a finite number > 0, got float -1\.0\."),  # torch's optimizer refused it
        (dict(lr=0), r"^lr: expected a finite number > 0, got int 0\."),
        (dict(grad_clip=0.0), r"^grad_clip: expected a finite number > 0, got float 0\.0\."),
        (dict(weight_decay=float("nan")), r"^weight_decay: expected a finite number >= 0, got float nan\."),
        (dict(focal_alpha=1.5), r"^focal_alpha: expected a weight in \[0, 1\], or a negative number for no weighting"),
        (dict(seed="0"), r"^seed: expected an integer >= 0, got str '0'\."),
    ],
)
def test_a_recipe_that_cannot_train_is_refused_naming_the_field(fields, message):
    with pytest.raises(SamInputError, match=message):
        TrainConfig(**fields)


def test_a_recipe_takes_numpy_numbers_as_plain_ones():
    cfg = TrainConfig(steps=np.int64(2), lr=np.float32(5e-4), box_fraction=np.float64(0.5), clicks=np.int32(1))
    assert [type(v) for v in (cfg.steps, cfg.lr, cfg.box_fraction, cfg.clicks)] == [int, float, float, int]
    assert json.loads(json.dumps(dataclasses.asdict(cfg)))["steps"] == 2  # as the saved state records the recipe


def test_train_refuses_bad_arguments_before_it_writes_anything(tmp_path):
    cases = [
        (dict(cfg={"steps": 1}), r"^cfg: expected a TrainConfig, e\.g\. TrainConfig\(steps=200\), got dict"),
        (dict(model_name="vit_q"), r"^model_name: expected one of .*'tiny'.*, got 'vit_q'\."),
        (dict(scene_config={"image_size": 96}), r"^scene_config: expected a SceneConfig or None, got dict"),
        (dict(resume="no"), r"^resume: expected True or False, got str 'no'\."),
        (dict(workers=0), r"^workers: expected a positive integer, got int 0\."),
        (dict(work_dir=None), r"^work_dir: expected a folder path \(a str or a Path\), got NoneType None\."),
    ]
    for arguments, message in cases:
        with pytest.raises(SamInputError, match=message):
            train(**{"cfg": TrainConfig(steps=1), "work_dir": tmp_path / "run", "progress": False, **arguments})
    assert list(tmp_path.iterdir()) == []


def test_the_losses_refuse_targets_without_their_mask_axis():
    logits, targets = torch.randn(3, 3, 8, 8), torch.rand(3, 8, 8) > 0.5  # broadcast, target j met mask j
    message = re.escape("targets: expected shape (3, 1 or 3, 8, 8) to match logits (3, 3, 8, 8), got Tensor of shape "
                        "(3, 8, 8) and dtype torch.bool. Give each target its mask axis: targets[:, None].")
    for loss in (sigmoid_focal_loss, dice_loss, mask_iou):
        with pytest.raises(SamInputError, match=message):
            loss(logits, targets)
        assert loss(logits, targets[:, None]).shape == (3, 3)
    with pytest.raises(SamInputError, match=r"^logits: expected a torch\.Tensor of shape \(N, M, H, W\), got Tensor "
                                            r"of shape \(3, 8, 8\)"):
        sigmoid_focal_loss(logits[0], targets[:1].float())  # gave a (3, 8) "loss"
    with pytest.raises(SamInputError, match=r"^targets: expected shape \(3, 1 or 3, 8, 8\) .*got Tensor of shape "
                                            r"\(3, 1, 4, 4\)"):
        dice_loss(logits, targets[:, None, :4, :4])  # another resolution: torch's expand failed
    with pytest.raises(SamInputError, match=r"^logits: expected a torch\.Tensor"):
        mask_iou(logits.numpy(), targets[:, None].numpy())
    with pytest.raises(SamInputError, match=r"^gamma: expected a finite number >= 0, got int -1\."):
        sigmoid_focal_loss(logits, targets[:, None], gamma=-1)


def test_the_prompt_helpers_refuse_what_they_cannot_use():
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(SamInputError, match=r"^boxes: expected a float torch\.Tensor of shape \(N, 4\), .*got ndarray"):
        jitter_boxes(np.array([[1.0, 2, 5, 6]]), 96, generator)
    with pytest.raises(SamInputError, match=r"^boxes: expected a float torch\.Tensor of shape \(N, 4\)"):
        jitter_boxes(torch.tensor([1.0, 2, 5, 6]), 96, generator)
    with pytest.raises(SamInputError, match=r"^image_size: expected a positive integer, got float 96\.0\."):
        jitter_boxes(torch.tensor([[1.0, 2, 5, 6]]), 96.0, generator)
    assert jitter_boxes(torch.tensor([[1.0, 2, 5, 6]]), 96, generator).shape == (1, 4)
    with pytest.raises(SamInputError, match=r"^low_res: expected a positive integer, got int 0\."):
        low_res_to_input(torch.zeros(1, 2), 96, 0)  # ZeroDivisionError
    with pytest.raises(SamInputError, match=r"^xy: expected a torch\.Tensor of shape \(N, 2\)"):
        low_res_to_input(torch.zeros(2), 96, 24)


def test_save_folder_dataset_checks_every_sample_and_never_replaces_a_file(tmp_path):
    image, masks = np.zeros((8, 10, 3), np.uint8), np.zeros((2, 8, 10), bool)
    masks[:, 2:5, 3:6] = True
    root = save_folder_dataset(tmp_path / "data", [("a", image, masks)])
    assert sorted(p.name for p in root.rglob("*.png")) == ["a.png", "a_0.png", "a_1.png"]
    before = {p: p.read_bytes() for p in root.rglob("*.png")}
    save_folder_dataset(root, [("a", image, masks.astype(np.uint8))])  # a cell run again: the same files
    assert {p: p.read_bytes() for p in root.rglob("*.png")} == before
    with pytest.raises(SamInputError, match=r"^root: expected a folder without other files under the names to write, "
                                            r"got .*data, which holds images/a\.png, masks/a_1\.png; nothing was "
                                            r"written\. Pass a new folder\.$"):
        save_folder_dataset(root, [("b", image, masks[:1]), ("a", image + 1, np.stack([masks[0], ~masks[1]]))])
    assert {p: p.read_bytes() for p in root.rglob("*.png")} == before  # b was not written either
    cases = [
        ([("c", image, masks[0])], r"^samples\[0\] masks: expected a numpy array of shape \(N, 8, 10\), the image's "
                                   r"size, got ndarray of shape \(8, 10\).*For one mask pass it as mask\[None\]\."),
        ([("c", image, masks[:, :4])], r"^samples\[0\] masks: expected a numpy array of shape \(N, 8, 10\)"),
        ([("c", image, list(masks))], r"^samples\[0\] masks: .*For a list of \(H, W\) masks pass np\.stack\(masks\)\."),
        ([("c", image, masks.astype(np.uint8) * 255)], r"^samples\[0\] masks: expected bool masks .*masks > 0\."),
        ([("c", image / 255.0, masks)], r"^samples\[0\] image: expected an \(H, W, 3\) uint8 numpy array"),
        ([("c/d", image, masks)], r"^samples\[0\] name: expected a non-empty file name without / or \\"),
        ([("c", image, masks), ("c", image, masks)], r"^samples\[1\] name: expected a name no other sample has"),
        ([("c", image)], r"^samples\[0\]: expected a triple \(name, image, masks\)"),
    ]
    for samples, message in cases:
        with pytest.raises(SamInputError, match=message):
            save_folder_dataset(tmp_path / "new", samples)
    assert not (tmp_path / "new").exists()


def test_encode_rle_refuses_several_masks_at_once():
    with pytest.raises(SamInputError, match=r"^mask: expected a numpy array of shape \(H, W\), got ndarray of shape "
                                            r"\(2, 4, 4\).*encode each: mask\[i\]\."):
        encode_rle(np.zeros((2, 4, 4), bool))
