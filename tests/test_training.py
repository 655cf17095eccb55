"""The training recipe: prompts and simulated clicks, a training step that learns, resuming, evaluation."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import pytest
import torch

from sam_from_scratch.build import build_sam

from sam_from_scratch.config import CONFIGS, SamConfig
from sam_from_scratch.training.scenes import SceneConfig
from sam_from_scratch.training.loop import (
    TrainConfig,
    add_arguments,
    center_error_clicks,
    distance_to_border,
    evaluate,
    lr_factor,
    make_optimizer,
    mask_boxes,
    random_points_in,
    sample_error_clicks,
    train,
    training_batch,
    training_loss,
)

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


def test_boxes_are_tight_and_inclusive():
    torch.testing.assert_close(mask_boxes(square(1, lo=3, hi=9)), torch.tensor([[3.0, 3.0, 8.0, 8.0]]))


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
    assert training_loss(model, 1, cfg, scenes, batch=ahead)["loss"].item() == training_loss(model, 1, cfg, scenes)["loss"].item()
    other = training_batch(2, cfg, scenes)
    assert training_loss(model, 1, cfg, scenes, batch=other)["loss"].item() != training_loss(model, 1, cfg, scenes)["loss"].item()


def test_training_writes_a_loss_log_and_resumes_to_the_same_weights(tmp_path, monkeypatch):
    import sam_from_scratch.training.loop as training

    scenes = SceneConfig(image_size=48)
    straight, log = train(QUICK, "micro", scenes, work_dir=tmp_path / "a", progress=False)
    assert [row["step"] for row in log] == [0, 1, 2, 3]
    assert (tmp_path / "a" / "loss_log.csv").read_text().count("\n") == 5  # header + 4 rows

    # Interrupt a second run during step 3: its last saved state is after step 2 (save_every=2).
    real_loss = training.training_loss

    def interrupted(model, step, *args):
        if step == 3:
            raise KeyboardInterrupt
        return real_loss(model, step, *args)

    monkeypatch.setattr(training, "training_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(QUICK, "micro", scenes, work_dir=tmp_path / "b", progress=False)
    monkeypatch.setattr(training, "training_loss", real_loss)
    assert torch.load(tmp_path / "b" / "state.pt", weights_only=True)["step"] == 2

    resumed, log = train(QUICK, "micro", scenes, work_dir=tmp_path / "b", progress=False)
    assert [row["step"] for row in log] == [0, 1, 2, 3]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)


def test_two_workers_train_what_their_added_shares_train_in_one_process(tmp_path):
    cfg, scenes = replace(QUICK, steps=3), SceneConfig(image_size=48)
    parallel, log = train(cfg, "micro", scenes, work_dir=tmp_path, progress=False, workers=2)
    assert [row["step"] for row in log] == [0, 1, 2]
    assert torch.load(tmp_path / "state.pt", weights_only=True)["step"] == 3

    # The same steps by hand: both shares' losses backpropagated into one gradient, then one optimizer step.
    torch.manual_seed(cfg.seed)
    model = build_sam(MICRO).train()
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    for step in range(cfg.steps):
        optimizer.zero_grad()
        for rank in (0, 1):
            training_loss(model, step, cfg, scenes, rank, 2)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
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


def test_the_command_line_has_the_documented_options():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--steps", "7", "--threads", "1", "--fresh"])
    assert args.steps == 7 and args.threads == 1 and args.fresh and args.work_dir == "runs/train-tiny"
    assert args.workers == 2 and parser.parse_args(["--workers", "1"]).workers == 1


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
    parts = training_loss(model, 1, cfg, scenes, generator=generator)
    assert parts["loss"].device.type == "cuda" and torch.isfinite(parts["loss"])
    assert 0.0 <= parts["first_iou"] <= 1.0
    parts["loss"].backward()
    again = training_loss(model, 1, cfg, scenes, generator=torch.Generator(device="cuda").manual_seed(0))
    assert again["loss"].item() == pytest.approx(parts["loss"].item(), rel=1e-5)  # seeded: the same clicks again
