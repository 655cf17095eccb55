"""The training recipe: prompts and simulated clicks, a training step that learns, resuming, several
workers, evaluation, and `train_tiny`, which retrains the bundled model."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

import sam_from_scratch.training.loop as loop
from sam_from_scratch.build import build_sam
from sam_from_scratch.config import CONFIGS, SamConfig
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.training import (
    SceneConfig,
    TrainConfig,
    batch_loss,
    evaluate,
    lr_factor,
    make_optimizer,
    prompt_generator,
    train,
    train_tiny,
    training_batch,
    training_loss,
)
from sam_from_scratch.training.loop import write_atomically
from sam_from_scratch.training.prompts import (
    center_error_clicks,
    distance_to_border,
    jitter_boxes,
    random_points_in,
    sample_error_clicks,
)
from sam_from_scratch.training.tiny import CARD_NAME, CHECKPOINT_NAME, TINY_DIR

# A model much smaller than tiny, so that training steps take a fraction of a second.
MICRO = SamConfig(
    encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,), image_size=48,
    patch_size=8, window_size=3, prompt_embed_dim=32, decoder_num_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32,
)
QUICK = TrainConfig(steps=4, images_per_step=2, prompts_per_image=2, warmup_steps=1, save_every=2, log_every=1)


@pytest.fixture(autouse=True)
def micro_config(monkeypatch):
    monkeypatch.setitem(CONFIGS, "micro", MICRO)


def square(n: int = 1, size: int = 16, lo: int = 4, hi: int = 12) -> torch.Tensor:
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, lo:hi, lo:hi] = True
    return masks


def test_random_points_fall_inside_their_masks():
    masks = square(50)
    xy = random_points_in(masks, torch.Generator().manual_seed(0)).long()
    assert masks[torch.arange(50), xy[:, 1], xy[:, 0]].all()


def test_jittered_boxes_stay_near_the_box_and_inside_the_image():
    boxes = torch.tensor([[3.0, 3.0, 8.0, 8.0]]).repeat(200, 1)
    jittered = jitter_boxes(boxes, 16, torch.Generator().manual_seed(0))
    assert (jittered >= 0).all() and (jittered <= 15).all()
    assert 0 < (jittered - boxes).abs().max() <= 0.04 * 16 + 1e-6  # each side moves, by at most 4% of the image


def test_distance_to_border_counts_erosions():
    d = distance_to_border(square(1, size=9, lo=1, hi=8))  # a 7x7 square
    assert d.max() == 4 and d[0, 4, 4] == 4 and d[0, 1, 1] == 1 and d[0, 0, 0] == 0


def test_a_missed_object_gets_a_positive_click_inside_it():
    truth = square(8)
    pred = torch.zeros_like(truth)
    xy, labels = sample_error_clicks(pred, truth, torch.Generator().manual_seed(0))
    assert (labels == 1).all()
    assert truth[torch.arange(8), xy[:, 1].long(), xy[:, 0].long()].all()


def test_a_spurious_region_gets_a_negative_click_inside_it():
    truth = square(8)
    pred = truth.clone()
    pred[:, 0:3, :] = True  # spurious stripe at the top
    xy, labels = sample_error_clicks(pred, truth, torch.Generator().manual_seed(0))
    assert (labels == 0).all() and (xy[:, 1] < 3).all()


def test_evaluation_clicks_go_to_the_centre_of_the_larger_error():
    truth = square(1, size=20, lo=2, hi=18)
    pred = truth.clone()
    pred[0, 5:12, 5:12] = False  # a 7x7 hole: false negatives centred at (8, 8)
    pred[0, 0, :] = True  # a one-pixel false-positive stripe
    xy, labels = center_error_clicks(pred, truth)
    assert labels.tolist() == [1.0] and xy.tolist() == [[8.0, 8.0]]
    xy, labels = center_error_clicks(truth, truth)
    assert labels.tolist() == [-1.0]  # nothing to correct: "not a point"


def test_training_batches_are_reproducible():
    a, b = training_batch(3, QUICK, SceneConfig(image_size=48)), training_batch(3, QUICK, SceneConfig(image_size=48))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    images, targets, image_index, is_box = a
    assert images.shape == (2, 48, 48, 3) and targets.shape == (4, 48, 48)
    assert image_index.tolist() == [0, 0, 1, 1]


def test_the_shares_of_two_workers_make_up_the_whole_batch():
    scenes = SceneConfig(image_size=48)
    whole = training_batch(5, QUICK, scenes)
    shares = [training_batch(5, QUICK, scenes, rank, 2) for rank in (0, 1)]
    assert [len(share[0]) for share in shares] == [1, 1]
    for k in (0, 1, 3):  # images, targets, is_box
        assert torch.equal(torch.cat([share[k] for share in shares]), whole[k])
    assert shares[1][2].tolist() == [0, 0]  # image indices are local to the share


def test_learning_rate_warms_up_then_decays():
    cfg = TrainConfig(steps=100, warmup_steps=10)
    assert lr_factor(0, cfg) < lr_factor(9, cfg) == 1.0
    assert lr_factor(50, cfg) < 1.0 and lr_factor(100, cfg) == pytest.approx(cfg.min_lr_fraction)


def test_a_few_steps_on_one_batch_reduce_its_loss():
    torch.manual_seed(0)
    model = build_sam(MICRO).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    cfg = TrainConfig(images_per_step=2, prompts_per_image=2, clicks=2)
    losses = []
    for _ in range(30):
        loss = training_loss(model, 0, cfg, SceneConfig(image_size=48))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_a_batch_made_ahead_gives_the_same_loss():
    """A data loader may make training_batch(step) in another process; the loss must not change."""
    torch.manual_seed(0)
    model, cfg, scenes = build_sam(MICRO).train(), replace(QUICK, clicks=2), SceneConfig(image_size=48)
    ahead = training_batch(1, cfg, scenes)
    step_loss = training_loss(model, 1, cfg, scenes)["loss"].item()
    assert batch_loss(model, ahead, cfg, prompt_generator(cfg, 1))["loss"].item() == step_loss
    other = training_batch(2, cfg, scenes)
    assert batch_loss(model, other, cfg, prompt_generator(cfg, 1))["loss"].item() != step_loss


def test_the_losses_of_the_shares_average_to_the_loss_of_the_whole_batch(monkeypatch):
    """What averaging the workers' gradients relies on. The clicks are made deterministic here, so that a
    prompt gets the same clicks in its share as in the whole batch."""
    def centre(pred, truth, generator=None):
        xy, labels = center_error_clicks(pred, truth)
        return xy, labels.clamp(min=0)

    monkeypatch.setattr(loop, "random_points_in", lambda masks, generator: centre(torch.zeros_like(masks), masks)[0])
    monkeypatch.setattr(loop, "jitter_boxes", lambda boxes, image_size, generator: boxes)
    monkeypatch.setattr(loop, "sample_error_clicks", centre)
    torch.manual_seed(0)
    model, cfg, scenes = build_sam(MICRO).train(), replace(QUICK, images_per_step=4), SceneConfig(image_size=48)
    whole = training_loss(model, 0, cfg, scenes)
    shares = [training_loss(model, 0, cfg, scenes, rank, 2) for rank in (0, 1)]
    assert bool(training_batch(0, cfg, scenes)[3].any()) and not bool(training_batch(0, cfg, scenes)[3].all())
    for key in ("loss", "focal", "dice", "iou_mse", "first_iou"):
        mean = (torch.as_tensor(shares[0][key]) + torch.as_tensor(shares[1][key])) / 2
        torch.testing.assert_close(mean.detach().double(), torch.as_tensor(whole[key]).detach().double(), rtol=1e-5, atol=1e-6, msg=key)


def test_training_writes_a_loss_log_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    scenes = SceneConfig(image_size=48)
    straight, log = train(QUICK, "micro", scenes, work_dir=tmp_path / "a", progress=False)
    assert [row["step"] for row in log] == [0, 1, 2, 3]
    assert (tmp_path / "a" / "loss_log.csv").read_text().count("\n") == 5  # header + 4 rows

    # Interrupt a second run during step 3: its last saved state is after step 2 (save_every=2).
    real_loss = loop.training_loss

    def interrupted(model, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return real_loss(model, step, *args)

    monkeypatch.setattr(loop, "training_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(QUICK, "micro", scenes, work_dir=tmp_path / "b", progress=False)
    monkeypatch.setattr(loop, "training_loss", real_loss)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == 2

    resumed, log = train(QUICK, "micro", scenes, work_dir=tmp_path / "b", progress=False)
    assert [row["step"] for row in log] == [0, 1, 2, 3]
    # The kept rows are written back as they were: steps as integers, so that the log reads the same and a
    # run resumed again can read it.
    kept = [line.split(",")[0] for line in (tmp_path / "b" / "loss_log.csv").read_text().splitlines()[1:]]
    assert kept == ["0", "1", "2", "3"]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_a_run_of_another_recipe_is_refused_not_replaced_and_resume_false_starts_over(tmp_path):
    scenes = SceneConfig(image_size=48)
    first = replace(QUICK, steps=2)
    train(first, "micro", scenes, work_dir=tmp_path, progress=False)
    before = everything_in(tmp_path)
    message = (r"^work_dir: expected a new folder or a run of this recipe to resume, got .*, whose state\.pt "
               r"\(step 2\) is another recipe's: steps 2 there, 3 here; lr 0\.001 there, 0\.0005 here\. "
               r"Pass another work_dir, "
               r"or resume=False to start over in this one")
    with pytest.raises(SamInputError, match=message):
        train(replace(first, steps=3, lr=5e-4), "micro", scenes, work_dir=tmp_path, progress=False)
    with pytest.raises(SamInputError, match=r"model_name 'micro' there, 'tiny' here"):
        train(first, "tiny", work_dir=tmp_path, progress=False)
    assert everything_in(tmp_path) == before
    _, log = train(replace(first, steps=3, lr=5e-4), "micro", scenes, work_dir=tmp_path, resume=False, progress=False)
    assert [row["step"] for row in log] == [0, 1, 2]
    assert torch.load(tmp_path / "state.pt", weights_only=True)["train_config"]["steps"] == 3


def test_training_never_overwrites_a_state_or_loss_log_it_did_not_write(tmp_path):
    scenes = SceneConfig(image_size=48)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "loss_log.csv").write_text("epoch,accuracy\n1,0.5\n")
    with pytest.raises(SamInputError, match=r"^work_dir: expected a folder without a loss_log\.csv or with one "
                                            r"train\(\) wrote, got .*mine, whose loss_log\.csv does not start"):
        train(QUICK, "micro", scenes, work_dir=mine, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "state.pt").write_bytes(b"not torch")
    for resume in (True, False):
        with pytest.raises(SamInputError, match=r"whose state\.pt is not a training state; training would overwrite"):
            train(QUICK, "micro", scenes, work_dir=other, resume=resume, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SamInputError, match=r"^work_dir: expected a folder for the run's state\.pt"):
        train(QUICK, "micro", scenes, work_dir=tmp_path / "file", progress=False)
    assert (mine / "loss_log.csv").read_text() == "epoch,accuracy\n1,0.5\n"
    assert (other / "state.pt").read_bytes() == b"not torch" and sorted(os.listdir(other)) == ["state.pt"]


def test_train_tiny_names_fresh_for_a_run_of_another_recipe(tmp_path, runs):
    out = earlier_run(tmp_path / "run")  # a run of 1 step
    with pytest.raises(SamInputError, match=r"steps 1 there, 2 here\. Pass another work_dir, or fresh=True to start"):
        train_tiny(out, steps=2, progress=False)
    train_tiny(out, steps=2, fresh=True, progress=False)
    assert [out for out, _ in runs] == [tmp_path / "run"]


def test_two_workers_over_gloo_train_what_one_process_trains_on_the_same_shares(tmp_path):
    cfg, scenes = replace(QUICK, steps=3), SceneConfig(image_size=48)
    parallel, log = train(cfg, "micro", scenes, work_dir=tmp_path, progress=False, workers=2)
    assert [row["step"] for row in log] == [0, 1, 2]
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 3

    # The same steps in one process: the mean of both shares' losses backpropagated into one gradient (the
    # workers average theirs), then one optimizer step.
    torch.manual_seed(cfg.seed)
    model = build_sam(MICRO).train()
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    logged = []
    for step in range(cfg.steps):
        optimizer.zero_grad()
        shares = [training_loss(model, step, cfg, scenes, rank, 2) for rank in (0, 1)]
        ((shares[0]["loss"] + shares[1]["loss"]) / 2).backward()
        logged.append((shares[0]["loss"].item() + shares[1]["loss"].item()) / 2)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
    assert [row["loss"] for row in log] == pytest.approx(logged, rel=1e-5)
    for key, value in model.state_dict().items():
        if key.endswith("k_proj.bias"):
            # Its true gradient is 0 (softmax ignores a shift shared by all keys); Adam turns rounding noise
            # into full-size steps, so the two runs differ here by design.
            continue
        torch.testing.assert_close(parallel.state_dict()[key], value, atol=1e-4, rtol=1e-3, msg=key)
    assert not parallel.training


def test_workers_must_divide_the_batch(tmp_path):
    with pytest.raises(ValueError, match="workers: expected a divisor of images_per_step=2, got 3"):
        train(QUICK, "micro", SceneConfig(image_size=48), work_dir=tmp_path, progress=False, workers=3)


def test_evaluation_reports_the_card_figures():
    model = build_sam(MICRO)
    figures = evaluate(model, num_scenes=2, scene_config=SceneConfig(image_size=48))
    for key in ("single_click_miou", "single_click_best_of_3_miou", "three_clicks_miou", "box_miou"):
        assert 0.0 <= figures[key] <= 1.0
    assert figures["single_click_best_of_3_miou"] >= figures["single_click_miou"]
    assert -1.0 <= figures["iou_prediction_correlation"] <= 1.0
    assert figures["num_instances"] >= 2
    model.train()  # measured between training steps: the model is given back in the mode it came in
    evaluate(model, num_scenes=1, scene_config=SceneConfig(image_size=48))
    assert model.training


@pytest.mark.cuda
def test_a_training_step_and_the_evaluation_on_cuda_agree_with_the_cpu():
    """The model on the GPU, the scenes and random clicks on the CPU: the same seed gives the same numbers."""
    torch.manual_seed(0)
    model, cfg, scenes = build_sam(MICRO).train(), replace(QUICK, clicks=3), SceneConfig(image_size=48)
    cpu = training_loss(model, 1, cfg, scenes)
    gpu_model = build_sam(MICRO).train().cuda()
    gpu_model.load_state_dict(model.state_dict())
    gpu = training_loss(gpu_model, 1, cfg, scenes)
    assert gpu["loss"].device.type == "cuda"
    for key in ("loss", "focal", "dice", "iou_mse", "first_iou"):
        assert float(torch.as_tensor(gpu[key]).detach()) == pytest.approx(float(torch.as_tensor(cpu[key]).detach()), rel=1e-3, abs=1e-5), key
    gpu["loss"].backward()  # the graph runs back through the GPU
    assert all(p.grad is None or p.grad.device.type == "cuda" for p in gpu_model.parameters())
    on_cpu = evaluate(model.eval(), num_scenes=3, scene_config=scenes)
    on_gpu = evaluate(gpu_model.eval(), num_scenes=3, scene_config=scenes)
    for key in ("single_click_miou", "single_click_best_of_3_miou", "box_miou"):
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=0.01), key
    for key in ("three_clicks_miou", "iou_prediction_correlation"):  # a flipped border pixel moves a click
        assert on_gpu[key] == pytest.approx(on_cpu[key], abs=0.05), key


@pytest.mark.cuda
def test_prompts_drawn_on_cuda_train_on_cuda():
    """With a CUDA generator the whole step stays on the GPU: other clicks than the CPU's, the same kind of loss."""
    torch.manual_seed(0)
    model, cfg, scenes = build_sam(MICRO).train().cuda(), replace(QUICK, clicks=3), SceneConfig(image_size=48)
    generator = torch.Generator(device="cuda").manual_seed(0)
    parts = batch_loss(model, training_batch(1, cfg, scenes), cfg, generator)
    assert parts["loss"].device.type == "cuda" and torch.isfinite(parts["loss"])
    assert 0.0 <= parts["first_iou"] <= 1.0
    parts["loss"].backward()
    again = batch_loss(model, training_batch(1, cfg, scenes), cfg, torch.Generator(device="cuda").manual_seed(0))
    assert again["loss"].item() == pytest.approx(parts["loss"].item(), rel=1e-5)  # seeded: the same clicks again


# ---------------------------------------------------------------------------------------------------------
# train_tiny: the bundled model's command, on a run of two steps into a temporary folder
# ---------------------------------------------------------------------------------------------------------
def folder_snapshot(folder):
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in folder.iterdir()}


def test_train_tiny_writes_the_checkpoint_and_the_card_into_out_and_nothing_else(tmp_path):
    bundled = folder_snapshot(TINY_DIR)
    out = tmp_path / "model"
    card = train_tiny(out, steps=2, workers=1, threads=1, eval_scenes=2, progress=False)
    assert folder_snapshot(TINY_DIR) == bundled
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_NAME, CARD_NAME, "state"])  # no temp file
    assert sorted(p.name for p in (out / "state").iterdir()) == ["loss_log.csv", "state.pt"]
    assert json.loads((out / CARD_NAME).read_text()) == card
    assert card["steps"] == 2 and card["train_config"]["steps"] == 2 and card["evaluation"]["num_scenes"] == 2
    assert card["training_time"]["workers"] == 1 and card["training_time"]["threads_per_worker"] == 1
    assert card["command"] == "python -m sam_from_scratch train-tiny --steps 2 --workers 1 --threads 1"

    # eval_only measures the saved checkpoint: the figures of the model that was trained.
    assert train_tiny(out, eval_only=True, threads=1, eval_scenes=2, progress=False) == card["evaluation"]

    # A second run into the same folder finds its own files: it goes on from its state (all steps done) and
    # replaces its checkpoint and card.
    again = train_tiny(out, steps=2, workers=1, threads=1, eval_scenes=2, progress=False)
    assert again["steps"] == 2 and json.loads((out / CARD_NAME).read_text()) == again
    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_NAME, CARD_NAME, "state"])


def test_train_tiny_refuses_a_run_without_steps(tmp_path):
    with pytest.raises(SamInputError, match=r"^steps: expected a positive integer, got int 0\.$"):
        train_tiny(tmp_path / "out", steps=0, progress=False)
    with pytest.raises(ValueError, match="workers: expected a divisor of images_per_step=16, got 3"):
        train_tiny(tmp_path / "out", steps=1, workers=3, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_eval_only_needs_a_trained_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="out: expected a trained model at .*sam_tiny.pt, found none"):
        train_tiny(tmp_path, eval_only=True, progress=False)


def test_an_interrupted_train_tiny_leaves_no_empty_folder_it_created(tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "training_loss", interrupted)
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt):
        train_tiny(existing / "new" / "out", steps=2, workers=1, threads=1, progress=False)
    assert list(tmp_path.iterdir()) == [existing] and list(existing.iterdir()) == []  # its own folder stays

    # Interrupted after training: the saved state is progress to resume from, and it stays.
    monkeypatch.undo()
    import sam_from_scratch.training.tiny as tiny

    def interrupted_evaluation(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny, "evaluate", interrupted_evaluation)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(existing / "new" / "out", steps=1, workers=1, threads=1, progress=False)
    assert [p.name for p in (existing / "new" / "out").iterdir()] == ["state"]  # no checkpoint, no card
    assert sorted(p.name for p in (existing / "new" / "out" / "state").iterdir()) == ["loss_log.csv", "state.pt"]


@pytest.fixture
def runs(monkeypatch):
    """train_tiny's calls that passed its checks, with nothing trained or written."""
    import sam_from_scratch.training.tiny as tiny

    calls = []
    monkeypatch.setattr(tiny, "_train_and_write", lambda out, cfg, work_dir, *rest: calls.append((out, work_dir)) or {})
    return calls


def earlier_run(out, work_dir=None):
    """The files a finished train-tiny run leaves in `out` (and its state in `work_dir`, default out/state)."""
    from sam_from_scratch.training.tiny import write_card

    work_dir = out / "state" if work_dir is None else work_dir
    work_dir.mkdir(parents=True)
    out.mkdir(exist_ok=True)
    saved_state(work_dir)
    (work_dir / "loss_log.csv").write_text(",".join(loop.LOG_FIELDS) + "\n")
    (out / CHECKPOINT_NAME).write_bytes(b"weights")
    seconds = {"wall_seconds": 1.0, "workers": 1, "threads_per_worker": 1}
    write_card(out / CARD_NAME, "tiny", replace(TrainConfig(), steps=1), {"num_scenes": 1}, seconds)
    return out


def saved_state(work_dir, cfg=replace(TrainConfig(), steps=1), model_name="tiny"):
    """A state.pt as train() saves it (no weights: only its recipe is read before a run), for `cfg`."""
    state = {"model": {}, "optimizer": {}, "scheduler": {}, "step": 1, "elapsed": 1.0,
             "train_config": json.loads(json.dumps(asdict(cfg))), "model_name": model_name}
    torch.save(state, work_dir / "state.pt")


def everything_in(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_train_tiny_goes_on_in_a_folder_only_it_wrote(tmp_path, runs):
    out = earlier_run(tmp_path / "run")
    (out / f".{CARD_NAME}.4242.tmp").write_text("{")  # what a killed run leaves while writing
    (out / "state" / ".state.pt.4242.tmp").write_bytes(b"sta")
    train_tiny(out, steps=1, progress=False)

    interrupted = tmp_path / "interrupted"  # stopped before it saved a checkpoint: its state only
    (interrupted / "state").mkdir(parents=True)
    saved_state(interrupted / "state")
    train_tiny(interrupted, steps=1, progress=False)

    elsewhere = earlier_run(tmp_path / "model", work_dir=tmp_path / "states" / "tiny")  # --work-dir
    train_tiny(elsewhere, steps=1, work_dir=tmp_path / "states" / "tiny", progress=False)
    deeper = earlier_run(tmp_path / "deeper", work_dir=tmp_path / "deeper" / "runs" / "a")
    train_tiny(deeper, steps=1, work_dir=deeper / "runs" / "a", progress=False)

    # Replacing the bundled model is deliberate: its folder holds more than a run writes.
    train_tiny(TINY_DIR, steps=1, work_dir=tmp_path / "bundled-state", progress=False)
    assert [out for out, _ in runs] == [out, interrupted, elsewhere, deeper, TINY_DIR]


def test_train_tiny_refuses_a_folder_holding_files_it_did_not_write(tmp_path, runs):
    finetuned = tmp_path / "finetuned"  # a fine-tuning run folder, and a checkpoint copied beside it
    finetuned.mkdir()
    (finetuned / "run.json").write_text('{"settings": {"model": "tiny"}}')
    (finetuned / "card.json").write_text('{"model": "tiny", "checkpoint": "sam_tiny_finetuned.pth", "steps": 1}')
    (finetuned / "sam_tiny_finetuned.pth").write_bytes(b"weights")
    (finetuned / CHECKPOINT_NAME).write_bytes(b"weights")
    masks = tmp_path / "masks"  # what `everything --out masks` wrote
    masks.mkdir()
    (masks / "overlay.png").write_bytes(b"png")
    (masks / "masks.json").write_text("[]")
    alone = tmp_path / "alone"  # a checkpoint with no card of train-tiny's: anyone's
    alone.mkdir()
    (alone / CHECKPOINT_NAME).write_bytes(b"weights")
    notes = earlier_run(tmp_path / "notes")  # train-tiny's folder, and a file of the user's in its state
    (notes / "state" / "notes.txt").write_text("mine")
    before = everything_in(tmp_path)

    with pytest.raises(SamInputError, match=(
            rf"^out: expected a new folder or one train-tiny wrote before \(its sam_tiny\.pt, card\.json and state/\), "
            rf"got {re.escape(str(finetuned))}, which holds card\.json \(not a train-tiny card\), run\.json, "
            rf"sam_tiny\.pt \(without a train-tiny card\), sam_tiny_finetuned\.pth; train-tiny never overwrites "
            rf"files it did not create\.$")):
        train_tiny(finetuned, steps=1, progress=False)
    with pytest.raises(SamInputError, match=rf"^out: .* got {re.escape(str(masks))}, which holds masks\.json, "
                                            rf"overlay\.png;"):
        train_tiny(masks, steps=1, progress=False)
    with pytest.raises(SamInputError, match=r"which holds sam_tiny\.pt \(without a train-tiny card\);"):
        train_tiny(alone, steps=1, progress=False)
    with pytest.raises(SamInputError, match=rf"which holds {re.escape(str(Path('state') / 'notes.txt'))};"):
        train_tiny(notes, steps=1, progress=False)
    with pytest.raises(SamInputError, match=r"^work_dir: expected a new folder or one train-tiny wrote before \(its "
                                            r"state\.pt and loss_log\.csv\), got .*masks, which holds masks\.json"):
        train_tiny(tmp_path / "new", steps=1, work_dir=masks, progress=False)
    with pytest.raises(SamInputError, match=r"^out: expected a folder for train-tiny's files, got .*overlay\.png, "
                                            r"which is a file\.$"):
        train_tiny(masks / "overlay.png", steps=1, progress=False)
    assert runs == [] and everything_in(tmp_path) == before and not (tmp_path / "new").exists()


def test_the_command_refuses_a_folder_holding_files_it_did_not_write(tmp_path, runs, capsys):
    from sam_from_scratch.cli import main

    (tmp_path / "overlay.png").write_bytes(b"png")
    code = main(["train-tiny", "--out", str(tmp_path), "--steps", "1", "--eval-scenes", "1", "--workers", "1"])
    assert code == 2 and runs == []
    captured = capsys.readouterr()
    assert "expected time" not in captured.out  # refused before it says how long the run would take
    err = captured.err
    assert err.startswith("error: --out: ") and "which holds overlay.png; train-tiny never overwrites files" in err
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]


def test_an_atomic_write_that_fails_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "card.json"
    path.write_text("old")

    def half_written(tmp):
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_written)
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    write_atomically(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]
