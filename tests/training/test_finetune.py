"""Fine-tuning on your own data: reading COCO and folder datasets (and refusing bad ones), the held-out split,
what trains, the embedding cache, resuming, the run folder, the official checkpoint, adapters and the command.

The model is the bundled small one (96 px scenes), the data a handful of generated scenes written to disk.
"""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import star_dataset
from sam_from_scratch import from_pretrained
from sam_from_scratch.cli import main
from sam_from_scratch.config import CONFIGS
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.training.datasets import (
    decode_rle_counts,
    decode_segmentation,
    encode_rle,
    load_dataset,
    save_folder_dataset,
)
from sam_from_scratch.training.finetune import add_lora, finetune, official_state_dict

from sam_from_scratch.training.stars import STAR_SEED, make_star_scene

# the module itself: sam_from_scratch.training exports the function `finetune` under the same name
ft = importlib.import_module("sam_from_scratch.training.finetune")

FAST = dict(steps=3, batch=2, lr=1e-3, device="cpu", val_ids=["star_0", "star_1"], prompts_per_image=2, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def star_folder(tmp_path_factory):
    """Six star scenes as images/ + masks/ (one PNG per instance)."""
    return star_dataset(tmp_path_factory.mktemp("stars"), 6)


def small_model():
    return from_pretrained("tiny", device="cpu")


def count_encoder_passes(model):
    calls = []
    model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls


# ---- data ----------------------------------------------------------------------------------------------------------


def write_coco(tmp_path, images, annotations, size=(20, 30)):
    for image in images:
        Image.fromarray(np.zeros((*size, 3), np.uint8)).save(tmp_path / image["file_name"])
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


def test_coco_polygons_and_both_kinds_of_rle_read_as_the_masks_they_encode(tmp_path):
    mask = np.zeros((20, 30), bool)
    mask[3:9, 5:17] = True
    mask[12:18, 20:22] = True
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}, {"id": 2, "file_name": "b.png"}]
    annotations = [
        {"id": 10, "image_id": 1, "segmentation": encode_rle(mask)},
        {"id": 11, "image_id": 1, "segmentation": encode_rle(mask, compressed=False)},
        {"id": 12, "image_id": 2, "segmentation": [[5, 3, 16, 3, 16, 8, 5, 8]]},  # the first rectangle, corners inclusive
    ]
    data = load_dataset(write_coco(tmp_path, images, annotations))
    assert data.image_ids == ["1", "2"] and data.source["format"] == "coco"
    (_, masks_a), (image_b, masks_b) = data[0], data[1]
    assert masks_a.shape == (2, 20, 30) and (masks_a == mask).all()
    assert image_b.shape == (20, 30, 3) and (masks_b[0] == (mask & (np.arange(30) < 18))).all()


def test_compressed_rle_agrees_with_pycocotools():
    coco_mask = pytest.importorskip("pycocotools.mask")  # the reference only: the package never needs it
    rng = np.random.default_rng(0)
    for _ in range(30):
        mask = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random()
        reference = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
        assert encode_rle(mask)["counts"] == reference
        assert (decode_segmentation({"size": list(mask.shape), "counts": reference}, mask.shape, "x") == mask).all()
    assert decode_rle_counts(encode_rle(mask)["counts"]) == encode_rle(mask, compressed=False)["counts"]


def test_a_folder_of_label_maps_gives_one_mask_per_label(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "images" / "cat.jpg")
    labels = np.zeros((8, 10), np.uint8)
    labels[1:3, 1:3], labels[5:7, 4:9] = 1, 7
    Image.fromarray(labels).save(tmp_path / "masks" / "cat.png")
    _, masks = load_dataset(tmp_path)[0]
    assert masks.shape == (2, 8, 10) and (masks[0] == (labels == 1)).all() and (masks[1] == (labels == 7)).all()


def test_a_folder_of_instance_pngs_reads_back_what_was_written(star_folder):
    data = load_dataset(star_folder)
    assert len(data) == 6 and data.source["format"] == "folder"
    image, masks = data[3]
    scene = make_star_scene(STAR_SEED, 3)
    assert (image == scene.image).all() and (masks == scene.masks).all()


def broken(tmp_path, problem):
    """A small dataset with one problem; returns load_dataset's arguments."""
    if problem == "unknown format":
        (tmp_path / "data.csv").write_text("x")
        return (tmp_path / "data.csv",)
    if problem in ("mask size", "empty mask", "missing file"):
        sample = ("a", np.zeros((8, 8, 3), np.uint8), np.ones((1, 8, 8), bool))
        root = save_folder_dataset(tmp_path / "folder", [sample])
        if problem == "mask size":  # (save_folder_dataset refuses to write one)
            Image.fromarray(np.full((6, 6), 255, np.uint8)).save(root / "masks" / "a_0.png")
        if problem == "empty mask":
            Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "masks" / "a_0.png")
        if problem == "missing file":
            (root / "masks" / "a_0.png").unlink()
        return (root,)
    images = [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}]
    return (write_coco(tmp_path, images, [{"id": 1, "image_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]}]),)


def test_a_leading_tilde_in_the_paths_is_the_home_folder(tmp_path, monkeypatch):
    """As a shell reads ~/x (the command line's options are expanded the same way): never a folder named ~."""
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    scenes = [make_star_scene(STAR_SEED, i) for i in range(5)]
    save_folder_dataset("~/stars", [(f"star_{i}", scene.image, scene.masks) for i, scene in enumerate(scenes)])
    assert len(load_dataset("~/stars")) == 5
    torch.save(small_model().state_dict(), home / "model.pth")
    model = from_pretrained("~/model.pth", device="cpu")
    finetune(model, "~/stars", out="~/run", **{**FAST, "steps": 1})
    assert (home / "run" / "card.json").is_file() and list(elsewhere.iterdir()) == []
    for call in (lambda: finetune(model, "~/stars", out="~no_such_user_here/run", **FAST),
                 lambda: from_pretrained("~no_such_user_here/model.pth"), lambda: load_dataset("~no_such_user_here")):
        with pytest.raises(SamInputError, match=r"'~no_such_user_here.*', whose ~no_such_user_here names no home "):
            call()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("problem, message", [
    ("mask size", "a_0.png: expected a mask of 8x8 pixels (the size of"),
    ("empty mask", "a_0.png: expected a mask with at least one pixel set, got an empty mask"),
    ("missing file", "expected a_<k>.png or a.png for"),
    ("duplicate ids", "images[].id: expected unique ids, got duplicates ['1']"),
    ("unknown format", "expected a COCO instance .json file or a folder holding images/ and masks/"),
])
def test_a_bad_dataset_is_refused_with_the_file_and_what_was_expected(tmp_path, problem, message):
    with pytest.raises(SamInputError) as error:
        load_dataset(*broken(tmp_path, problem))
    assert message in str(error.value)


def test_a_coco_image_that_is_not_there_is_named(tmp_path):
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "gone.jpg"}], "annotations": []}))
    with pytest.raises(SamInputError, match=r"gone\.jpg: expected an image file, got no such file \(missing file\)\.$"):
        load_dataset(path)


def test_the_held_out_split_follows_the_seed_or_the_given_ids(star_folder):
    data = load_dataset(star_folder)
    train, held = data.split(0.34, seed=3)
    assert len(held) == 2 and len(train) == 4 and not set(held.image_ids) & set(train.image_ids)
    assert data.split(0.34, seed=3)[1].image_ids == held.image_ids
    assert data.split(val_ids=["star_4", "star_1.png"])[1].image_ids == ["star_1", "star_4"]
    with pytest.raises(SamInputError, match=r"val_ids: .* got unknown \['nope'\]"):
        data.split(val_ids=["nope"])


# ---- fine-tuning -----------------------------------------------------------------------------------------------------


def test_finetuning_trains_the_decoder_only_and_embeds_each_image_once(star_folder, tmp_path):
    model = small_model()
    encoder_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    prompt_before = {k: v.clone() for k, v in model.prompt_encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.mask_decoder.state_dict().items()}
    passes = count_encoder_passes(model)
    card = finetune(model, star_folder, out=tmp_path / "run", **{**FAST, "steps": 5})  # 5 steps of 2: 2.5 epochs
    assert len(passes) == 6  # every image once (4 to train, 2 held out), however many epochs
    assert all(torch.equal(v, model.image_encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert all(torch.equal(v, model.prompt_encoder.state_dict()[k]) for k, v in prompt_before.items())
    assert any(not torch.equal(v, model.mask_decoder.state_dict()[k]) for k, v in decoder_before.items())
    assert card["data"]["heldout_ids"] == ["star_0", "star_1"] and card["data"]["train_images"] == 4
    assert 0 <= card["heldout_miou_before"] <= 1 and 0 <= card["heldout_miou_after"] <= 1
    assert card["settings"]["lr"] == 1e-3 and card["steps"] == 5 and card["embedding_cache"]
    assert json.loads((tmp_path / "run" / "card.json").read_text()) == card
    assert len(list((tmp_path / "run" / "embeddings").glob("*.pt"))) == 6


def test_the_prompt_encoder_trains_when_asked(star_folder, tmp_path):
    model = small_model()
    before = {k: v.clone() for k, v in model.prompt_encoder.state_dict().items()}
    finetune(model, star_folder, out=tmp_path / "run", train_prompt_encoder=True, **FAST)
    assert any(not torch.equal(v, model.prompt_encoder.state_dict()[k]) for k, v in before.items())


def test_an_interrupted_run_resumes_to_the_same_weights_without_embedding_again(star_folder, tmp_path, monkeypatch):
    straight = small_model()
    finetune(straight, star_folder, out=tmp_path / "a", **{**FAST, "steps": 4})

    real_prompts = ft.image_prompts

    def interrupted(masks, cfg, step, position):
        if step == 3:
            raise KeyboardInterrupt
        return real_prompts(masks, cfg, step, position)

    monkeypatch.setattr(ft, "image_prompts", interrupted)
    with pytest.raises(KeyboardInterrupt):
        finetune(small_model(), star_folder, out=tmp_path / "b", **{**FAST, "steps": 4})
    monkeypatch.setattr(ft, "image_prompts", real_prompts)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == 3
    assert not (tmp_path / "b" / "card.json").exists()

    resumed = small_model()
    passes = count_encoder_passes(resumed)
    finetune(resumed, star_folder, out=tmp_path / "b", **{**FAST, "steps": 4})
    assert passes == []  # the second call found every embedding in the cache
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_the_run_folder_holds_nobody_elses_files(star_folder, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SamInputError, match=r"out: .* holds \['notes.txt'\]; fine-tuning never overwrites"):
        finetune(small_model(), star_folder, out=tmp_path, **FAST)
    assert (tmp_path / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    finetune(small_model(), star_folder, out=tmp_path / "run", **FAST)
    with pytest.raises(SamInputError, match="a run with other lr, steps; choose another --out"):
        finetune(small_model(), star_folder, out=tmp_path / "run", **{**FAST, "steps": 4, "lr": 1e-4})


def test_the_checkpoint_loads_strictly_into_the_official_segment_anything(star_folder, tmp_path):
    pytest.importorskip("segment_anything")
    from tests.conftest import official_sam_for_config

    model = small_model()
    card = finetune(model, star_folder, out=tmp_path / "run", **FAST)
    assert card["checkpoint"] == "sam_tiny_finetuned.pth"
    official = official_sam_for_config(CONFIGS["tiny"])
    official.load_state_dict(torch.load(tmp_path / "run" / card["checkpoint"], weights_only=True), strict=True)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(official.state_dict()[key], value, msg=key)


def test_adapters_train_on_the_encoder_and_fold_into_the_official_qkv_weights(star_folder, tmp_path):
    model = small_model()
    frozen_qkv = model.image_encoder.blocks[0].attn.qkv.weight.clone()
    passes = count_encoder_passes(model)
    card = finetune(model, star_folder, out=tmp_path / "run", lora_rank=2, **FAST)
    assert not card["embedding_cache"] and not (tmp_path / "run" / "embeddings").exists()
    assert len(passes) > 6  # no cache: the encoder runs at every step
    qkv = model.image_encoder.blocks[0].attn.qkv
    assert torch.equal(qkv.weight, frozen_qkv) and qkv.lora_B.abs().sum() > 0

    image = torch.from_numpy(make_star_scene(STAR_SEED, 0).image)[None]
    plain = small_model()
    plain.load_state_dict(torch.load(tmp_path / "run" / card["checkpoint"], weights_only=True), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ft.encode_images(plain, image), ft.encode_images(model, image), atol=1e-4, rtol=1e-4)


def test_lora_starts_as_the_identity_and_keeps_the_official_keys():
    model = small_model()
    keys = set(model.state_dict())
    image = torch.from_numpy(make_star_scene(STAR_SEED, 0).image)[None]
    with torch.no_grad():
        before = ft.encode_images(model, image)
        params = add_lora(model, 4)
        torch.testing.assert_close(ft.encode_images(model, image), before)
    assert len(params) == 2 * len(model.image_encoder.blocks)
    assert any("lora_A" in k for k in model.state_dict()) and set(official_state_dict(model)) == keys


def test_the_command_fine_tunes_and_refuses_bad_data(star_folder, tmp_path, capsys):
    code = main(["finetune", "--model", "tiny", "--data", str(star_folder), "--out", str(tmp_path / "run"),
                 "--steps", "2", "--batch", "2", "--lr", "1e-3", "--device", "cpu", "--val-ids", "star_0,star_1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "sam_tiny_finetuned.pth" in out and (tmp_path / "run" / "card.json").exists()
    code = main(["finetune", "--model", "tiny", "--data", str(tmp_path / "nothing.txt"), "--out", str(tmp_path / "x")])
    assert code == 2 and "data: expected a COCO .json file or a folder" in capsys.readouterr().err


def test_a_16_bit_training_image_is_scaled_not_clipped(tmp_path):
    """Pillow's own RGB conversion clips 16-bit values, which would train on a white picture."""
    from sam_from_scratch.training.datasets import read_rgb

    ramp = (np.arange(64, dtype=np.uint16)[None, :] * 1000).repeat(8, axis=0)  # 0 .. 63,000
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # uint16: mode I;16
    rgb = read_rgb(tmp_path / "deep.png")
    assert rgb.shape == (8, 64, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == round(63000 / 65535 * 255)
    assert len(np.unique(rgb[0, :, 0])) > 50  # a ramp, not a white picture


@torch.no_grad()
def test_one_batched_step_equals_its_images_one_by_one():
    """The step decodes all its images' prompts in one batch; each image keeps its own prompt generator, so the
    loss is the mean of the images' losses, each computed alone, and no image's clicks depend on the others."""
    from sam_from_scratch.training.loop import TrainConfig, batch_loss

    sam = small_model()
    cfg = TrainConfig(prompts_per_image=3, clicks=3, box_fraction=0.5)
    scenes = [make_star_scene(STAR_SEED, i) for i in range(3)]
    embeddings = [sam.image_encoder(sam.preprocess(torch.from_numpy(s.image).permute(2, 0, 1)[None].float()))
                  for s in scenes]
    prompts = [ft.image_prompts(torch.from_numpy(s.masks), cfg, step=5, position=i) for i, s in enumerate(scenes)]
    alone = []
    for embedding, (targets, is_box, generator) in zip(embeddings, prompts):
        batch = (embedding.permute(0, 2, 3, 1), targets, torch.zeros(3, dtype=torch.long), is_box)
        alone.append(batch_loss(ft._EmbeddedSam(sam), batch, cfg, generator))
    prompts = [ft.image_prompts(torch.from_numpy(s.masks), cfg, step=5, position=i) for i, s in enumerate(scenes)]
    batch = (torch.cat(embeddings).permute(0, 2, 3, 1), torch.cat([p[0] for p in prompts]),
             torch.arange(3).repeat_interleave(3), torch.cat([p[1] for p in prompts]))
    together = batch_loss(ft._EmbeddedSam(sam), batch, cfg, [p[2] for p in prompts])
    for key in ("loss", "focal", "dice", "iou_mse", "first_iou"):
        expected = sum(float(part[key]) for part in alone) / 3
        assert float(together[key]) == pytest.approx(expected, rel=1e-4, abs=1e-6), key


def test_replayed_images_join_the_training_images_and_none_is_held_out(star_folder, tmp_path):
    from sam_from_scratch.training.scenes import TRAIN_SEED, make_scene

    originals = [(f"scene_{i}", make_scene(TRAIN_SEED, i).image, make_scene(TRAIN_SEED, i).masks) for i in range(3)]
    replay = save_folder_dataset(tmp_path / "replay", originals)
    model = small_model()
    passes = count_encoder_passes(model)
    read = []  # the datasets of the images a training step reads
    real_read, real_forward = ft.read_masks, ft._FinetuneStep.forward

    def forward(self, step, rank, world):
        ft.read_masks = lambda record: read.append(record.path.parent.parent) or real_read(record)
        try:
            return real_forward(self, step, rank, world)
        finally:
            ft.read_masks = real_read

    ft._FinetuneStep.forward = forward
    try:
        card = finetune(model, star_folder, out=tmp_path / "run", replay=replay, **{**FAST, "steps": 7})
    finally:
        ft._FinetuneStep.forward = real_forward
    assert len(passes) == 9  # 6 star images and 3 replayed, each embedded once
    assert len(read) == 14 and sorted(set(map(str, read))) == sorted([str(star_folder), str(replay)])
    assert read.count(replay) == 6  # 7 steps of 2 images: two passes over the 7 training images, replayed ones too
    assert card["data"]["train_images"] == 4 and card["data"]["replay_images"] == 3
    assert card["data"]["heldout_ids"] == ["star_0", "star_1"]
    assert card["settings"]["replay"] == str(replay)


def test_a_missing_replay_dataset_is_named(star_folder, tmp_path):
    with pytest.raises(SamInputError, match=r"^replay: expected a COCO .json file or a folder"):
        finetune(small_model(), star_folder, out=tmp_path / "run", replay=tmp_path / "nowhere", **FAST)
    assert not (tmp_path / "run").exists()


def star_training_with_replay(star_folder, tmp_path, scenes: int):
    """The star folder's training images (star_0 and star_1 held out) followed by `scenes` original scenes saved
    as a replay folder: (replay folder, training part, both together)."""
    from sam_from_scratch.training.scenes import TRAIN_SEED, make_scene

    originals = [(f"scene_{i}", scene.image, scene.masks) for i, scene in
                 ((i, make_scene(TRAIN_SEED, i)) for i in range(scenes))]
    replay = save_folder_dataset(tmp_path / "replay", originals)
    train, _ = ft.load_dataset(star_folder).split(val_ids=["star_0", "star_1"])
    return replay, train, ft.InstanceDataset(train.records + ft.load_dataset(replay).records, train.source)


def test_replay_fraction_sets_the_share_of_replayed_images_in_each_step(star_folder, tmp_path):
    replay, train, mixed = star_training_with_replay(star_folder, tmp_path, 8)
    model = small_model()
    for fraction in (0.2, 0.8):
        cfg = ft.TrainConfig(seed=0)
        step = ft._FinetuneStep(model, mixed, None, cfg, own=len(train), replay_fraction=fraction)
        picks = [step.record_at(position) for position in range(2000)]
        share = sum(record.path.parent.parent == replay for record in picks) / len(picks)
        assert abs(share - fraction) < 0.04, (fraction, share)
        assert {record.path.stem for record in picks} == {r.path.stem for r in mixed.records}  # all of them
    with pytest.raises(SamInputError, match=r"^replay_fraction: expected None without a replay dataset"):
        finetune(small_model(), star_folder, out=tmp_path / "run", replay_fraction=0.5, **FAST)
    with pytest.raises(SamInputError, match=r"^replay_fraction: expected a number in \[0, 1\)"):
        finetune(small_model(), star_folder, out=tmp_path / "run", replay=replay, replay_fraction=1.5, **FAST)
    with pytest.raises(SamInputError, match=r"^replay_fraction: expected a share in \(0, 1\), got 0, which would "
                                            r"draw no replayed image at all; leave replay out"):
        finetune(small_model(), star_folder, out=tmp_path / "run", replay=replay, replay_fraction=0.0, **FAST)
    assert not (tmp_path / "run").exists()


def test_distill_holds_the_replayed_images_to_the_starting_model(star_folder, tmp_path):
    """With distill, a step whose images include replayed ones has a larger loss (the pull towards the starting
    model's answers is added), a step of your own images only the same loss; the run records the weight."""
    replay, train, mixed = star_training_with_replay(star_folder, tmp_path, 4)
    model = small_model()
    cache = ft.EmbeddingCache(model, tmp_path / "cache")
    cache.fill(mixed.records)
    cfg = ft.TrainConfig(seed=0, images_per_step=1, prompts_per_image=2)
    teacher = ft.copy.deepcopy(model).requires_grad_(False)
    plain = ft._FinetuneStep(model, mixed, cache, cfg, own=len(train), replay_fraction=0.5)
    held = ft._FinetuneStep(model, mixed, cache, cfg, own=len(train), replay_fraction=0.5, teacher=teacher, distill=20.0)
    checked = set()
    for step in range(12):
        replayed = id(plain.record_at(step)) in plain._replayed  # the step's one image
        a, b = plain(step, 0, 1)["loss"].item(), held(step, 0, 1)["loss"].item()
        assert (b > a + 1e-6) if replayed else (b == a), (step, replayed, a, b)
        checked.add(replayed)
    assert checked == {True, False}
    card = finetune(small_model(), star_folder, out=tmp_path / "run", replay=replay, distill=5.0, **FAST)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["distill"] == 5.0
    assert card["heldout_miou_after"] >= 0


def test_distill_weighs_each_replayed_prompt_as_the_ground_truth_does(star_folder, tmp_path, monkeypatch):
    """The pull towards the starting model is a mean over the step's prompts, like the ground-truth loss: with
    every mask logit 0 on both sides its per-pixel term is ln 2, so a replayed step's loss grows by exactly
    weight x ln 2, however its prompts split between points and boxes."""
    replay, train, mixed = star_training_with_replay(star_folder, tmp_path, 4)
    model = small_model()
    with torch.no_grad():
        for mlp in model.mask_decoder.output_hypernetworks_mlps:  # every mask logit 0
            mlp.layers[-1].weight.zero_()
            mlp.layers[-1].bias.zero_()
    cache = ft.EmbeddingCache(model, tmp_path / "cache")
    cache.fill(mixed.records)
    cfg = ft.TrainConfig(seed=0, images_per_step=1, prompts_per_image=8, box_fraction=0.5)
    teacher = ft.copy.deepcopy(model).requires_grad_(False)
    plain = ft._FinetuneStep(model, mixed, cache, cfg, own=len(train), replay_fraction=0.5)
    held = ft._FinetuneStep(model, mixed, cache, cfg, own=len(train), replay_fraction=0.5, teacher=teacher, distill=20.0)
    kinds = []  # the prompts' kinds of each batch: points and boxes are weighed in two groups
    real_batch_loss = ft.batch_loss
    monkeypatch.setattr(ft, "batch_loss", lambda model, batch, *rest: (kinds.append(set(batch[3].tolist())),
                                                                       real_batch_loss(model, batch, *rest))[1])
    replayed_steps = [step for step in range(12) if id(plain.record_at(step)) in plain._replayed]
    assert replayed_steps
    for step in replayed_steps:
        a, b = plain(step, 0, 1)["loss"].item(), held(step, 0, 1)["loss"].item()
        assert b - a == pytest.approx(20.0 * math.log(2), rel=1e-5), (step, a, b)
    assert {True, False} in kinds  # a step with both groups: where weighing by the group's size differs


def test_a_bad_distill_is_named(star_folder, tmp_path):
    with pytest.raises(SamInputError, match=r"^distill: expected 0 without a replay dataset, got 2\.0"):
        finetune(small_model(), star_folder, out=tmp_path / "run", distill=2.0, **FAST)
    with pytest.raises(SamInputError, match=r"^distill: expected a finite number >= 0, got float -1\.0"):
        finetune(small_model(), star_folder, out=tmp_path / "run", distill=-1.0, **FAST)
    assert not (tmp_path / "run").exists()


def test_a_held_out_image_is_never_replayed(star_folder, tmp_path, monkeypatch, capsys):
    """replay = the data itself: its held-out images (the same files) are left out of the replay set."""
    trained = []  # the images the training steps read
    real_record_at = ft._FinetuneStep.record_at
    monkeypatch.setattr(ft._FinetuneStep, "record_at",
                        lambda self, position: trained.append(real_record_at(self, position)) or trained[-1])
    card = finetune(small_model(), star_folder, out=tmp_path / "run", replay=star_folder, **{**FAST, "progress": True})
    assert card["data"]["replay_heldout_excluded"] == 2 and card["data"]["replay_images"] == 4
    assert card["data"]["heldout_ids"] == ["star_0", "star_1"]
    assert trained and not {r.path.stem for r in trained} & {"star_0", "star_1"}
    assert "replay: left out 2 of its images that are held out for validation" in capsys.readouterr().out


def test_a_replay_set_of_held_out_images_only_is_refused(star_folder, tmp_path):
    replay = tmp_path / "replay.json"  # star_0 again, as a COCO file
    replay.write_text(json.dumps({"images": [{"id": 1, "file_name": "star_0.png"}],
                                  "annotations": [{"id": 1, "image_id": 1, "segmentation": [[5, 5, 30, 5, 30, 30]]}]}))
    with pytest.raises(SamInputError, match=r"^replay: expected images besides the held-out ones, got .*replay\.json, "
                                            r"whose 1 images are all held out for validation\."):
        finetune(small_model(), star_folder, out=tmp_path / "run", replay=replay, replay_images=star_folder / "images",
                 **FAST)
    assert not (tmp_path / "run").exists()


def test_an_image_edited_since_the_last_run_is_embedded_again(tmp_path):
    """The cache is named by the file's size and time too: the run after an edit does not train on the old picture."""
    import os

    root = star_dataset(tmp_path / "stars", 4)
    arguments = {**FAST, "val_ids": ["star_0"], "steps": 2}
    finetune(small_model(), root, out=tmp_path / "run", **arguments)
    edited = root / "images" / "star_2.png"
    Image.fromarray(255 - np.asarray(Image.open(edited))).save(edited)
    os.utime(edited, ns=(edited.stat().st_atime_ns, edited.stat().st_mtime_ns + 10**9))  # even on a coarse clock
    model = small_model()
    passes = count_encoder_passes(model)
    finetune(model, root, out=tmp_path / "run", **arguments)
    assert len(passes) == 1  # star_2 only; the others come from the cache
    cache = ft.EmbeddingCache(model, tmp_path / "run" / "embeddings")
    record = next(r for r in load_dataset(root).records if r.path == edited)
    torch.testing.assert_close(torch.load(cache.path(record), weights_only=True), cache.compute(record))


def test_a_run_resumes_from_the_same_data_named_another_way_and_not_from_added_images(tmp_path, monkeypatch):
    """run.json keeps paths written out in full, and which files the data are: the same folder given from
    another working folder or with a trailing slash resumes the run; images added since would be split anew
    (a held-out image might already have trained), so the run is refused."""
    root = star_dataset(tmp_path / "stars", 4)
    arguments = {**FAST, "val_ids": None, "val_fraction": 0.3, "steps": 1}
    finetune(small_model(), root, out=tmp_path / "run", **arguments)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())
    assert recorded["settings"]["data"] == str(root) and len(recorded["data_fingerprint"]) == 16
    monkeypatch.chdir(tmp_path)
    finetune(small_model(), "stars/", out="run", **arguments)  # the same run: it resumes (here, is done)
    more = star_dataset(tmp_path / "more", 6)
    for name in ("star_4", "star_5"):
        (more / "images" / f"{name}.png").rename(root / "images" / f"{name}.png")
        for mask in (more / "masks").glob(f"{name}_*.png"):
            mask.rename(root / "masks" / mask.name)
    with pytest.raises(SamInputError, match=r"^out: expected the run's data as it was, got .*run, a run whose images or "
                                            r"masks have been added or removed since it began: resumed, it would split "
                                            r"them anew; choose another --out to start a new run\.$"):
        finetune(small_model(), root, out=tmp_path / "run", **arguments)


def test_a_run_recorded_with_a_relative_path_still_resumes(tmp_path, monkeypatch):
    """run.json files written before paths were recorded in full hold the path as typed."""
    root = star_dataset(tmp_path / "stars", 3)
    arguments = {**FAST, "val_ids": ["star_0"], "steps": 1}
    finetune(small_model(), root, out=tmp_path / "run", **arguments)
    run_file = tmp_path / "run" / "run.json"
    recorded = json.loads(run_file.read_text())
    recorded["settings"]["data"] = "stars"
    del recorded["data_fingerprint"]
    run_file.write_text(json.dumps(recorded))
    monkeypatch.chdir(tmp_path)
    finetune(small_model(), "stars", out="run", **arguments)


def test_embeddings_kept_when_images_were_read_in_their_stored_orientation_are_not_reused(star_folder, tmp_path):
    """Images are now read upright by their EXIF tag: a cache file named the earlier way (id, path, size, time)
    may hold the embedding of a sideways picture, so the names differ."""
    import hashlib

    record = load_dataset(star_folder).records[0]
    stat = record.path.stat()
    earlier = f"{record.image_id}|{record.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    name = ft.EmbeddingCache(small_model(), tmp_path).path(record).name
    assert name != hashlib.sha1(earlier.encode()).hexdigest()[:20] + ".pt" and name.endswith(".pt")


def test_a_model_passed_in_is_the_one_trained(star_folder, tmp_path):
    """As finetune's docstring says: the Sam given trains in place (a deep copy keeps the original)."""
    model, original = small_model(), small_model()
    kept = ft.copy.deepcopy(original)
    finetune(model, star_folder, out=tmp_path / "a", lora_rank=2, **FAST)
    finetune(kept, star_folder, out=tmp_path / "b", **FAST)
    assert not model.training and isinstance(model.image_encoder.blocks[0].attn.qkv, ft.LoRALinear)
    assert all(p.requires_grad == (".lora_" in n or n.startswith("mask_decoder.")) for n, p in model.named_parameters())
    assert any(not torch.equal(v, model.state_dict()[k]) for k, v in original.state_dict().items())
    assert all(torch.equal(v, original.state_dict()[k]) for k, v in small_model().state_dict().items())
