"""Training a small SAM with SAM's own recipe, on scenes from our data engine.

One training step:
  1. draw a batch of generated scenes and run the image encoder once per image;
  2. pick a few objects per image and give each a first prompt: a random point inside it, or its box;
  3. simulate a user for `clicks` rounds: decode, score the masks against the truth (losses.py), then add a
     click where the prediction is wrong (a missed pixel gives a positive click, a spurious pixel a negative
     one) and feed the previous mask logits back in as the mask prompt;
  4. one optimizer step on the mean loss of all rounds.

`python -m sam_from_scratch train-tiny` reproduces sam_from_scratch/data/tiny/sam_tiny.pt. Everything random is derived from
(seed, step), and the state is saved every `save_every` steps, so an interrupted run resumes where it stopped
and ends with the same weights. `evaluate` measures the figures of the model card on held-out scenes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..build import build_sam
from ..config import CONFIGS, DATA_DIR, config_dict
from ..training.scenes import HELDOUT_SEED, TRAIN_SEED, SceneConfig, make_scene
from ..training.losses import mask_iou, sam_loss
from ..modeling.sam import Sam


@dataclass(frozen=True)
class TrainConfig:
    """The recipe of the bundled tiny model (change `steps` for a quick demo)."""

    steps: int = 2400
    images_per_step: int = 16  # split between the workers
    prompts_per_image: int = 4
    clicks: int = 2  # rounds per prompt: the first prompt, then clicks - 1 corrective clicks
    box_fraction: float = 0.25  # share of prompts that start from a box instead of a point
    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 30
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    focal_alpha: float = -1.0  # no class weighting: with 0.25 the small objects are drowned by the background
    seed: int = 0
    save_every: int = 50
    log_every: int = 5


# ---------------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------------
def random_points_in(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniformly random pixel inside each mask: (N, H, W) bool -> (N, 2) float (x, y) pixel indices."""
    weights = masks.flatten(1).float()
    weights[weights.sum(1) == 0] = 1.0  # an empty mask: any pixel
    flat = torch.multinomial(weights, 1, generator=generator)[:, 0]
    W = masks.shape[-1]
    return torch.stack([flat % W, flat // W], dim=1).float()


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes (x0, y0, x1, y1) of (N, H, W) bool masks, inclusive pixel indices -> (N, 4) float."""
    rows, cols = masks.any(2), masks.any(1)  # (N, H), (N, W)
    arange_h = torch.arange(masks.shape[1], dtype=torch.float32, device=masks.device)
    arange_w = torch.arange(masks.shape[2], dtype=torch.float32, device=masks.device)
    x0 = torch.where(cols, arange_w, math.inf).amin(1)
    x1 = torch.where(cols, arange_w, -math.inf).amax(1)
    y0 = torch.where(rows, arange_h, math.inf).amin(1)
    y1 = torch.where(rows, arange_h, -math.inf).amax(1)
    return torch.stack([x0, y0, x1, y1], dim=1)


def jitter_boxes(boxes: torch.Tensor, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """SAM trains on imprecise boxes: move each side by noise ~ 10% of the box side (at most 4% of the image)."""
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, dim=1) + 1
    noise = torch.randn(boxes.shape, generator=generator, device=boxes.device) * 0.1 * side
    noise = noise.clamp(-0.04 * image_size, 0.04 * image_size)
    return (boxes + noise).clamp(0, image_size - 1)


def erode(masks: torch.Tensor) -> torch.Tensor:
    """One 3x3 erosion of (N, H, W) bool masks; outside the image counts as background."""
    padded = F.pad(masks[:, None].float(), (1, 1, 1, 1), value=0.0)
    return (-F.max_pool2d(-padded, 3, stride=1))[:, 0] > 0.5


def distance_to_border(masks: torch.Tensor) -> torch.Tensor:
    """How many erosions each pixel survives (its chessboard distance to the region's border): (N, H, W) int."""
    distance = torch.zeros(masks.shape, dtype=torch.int32)
    current = masks.clone()
    while current.any():
        distance += current.int()
        current = erode(current)
    return distance


def error_regions(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """False negatives (missed object pixels) and false positives (spurious pixels) of (N, H, W) bool masks."""
    return truth & ~pred, pred & ~truth


def sample_error_clicks(
    pred: torch.Tensor, truth: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training clicks: a random pixel of the error region, away from its border where possible.

    Args:
        pred, truth: (N, H, W) bool.

    Returns:
        (N, 2) pixel indices (x, y) and (N,) labels: 1 where the pixel was missed, 0 where it is spurious.
        A perfect prediction gets a positive click inside the object.
    """
    fn, fp = error_regions(pred, truth)
    error = fn | fp
    inner = erode(error)
    has_inner = inner.flatten(1).any(1)[:, None, None]
    region = torch.where(has_inner, inner, error)
    perfect = ~region.flatten(1).any(1)[:, None, None]
    region = torch.where(perfect, truth, region)
    xy = random_points_in(region, generator)
    W = truth.shape[-1]
    flat = (xy[:, 1] * W + xy[:, 0]).long()
    labels = truth.flatten(1).gather(1, flat[:, None])[:, 0].float()
    return xy, labels


def center_error_clicks(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation clicks (deterministic): the error pixel farthest from the border of its error region.

    Same shapes as `sample_error_clicks`; a perfect prediction gets label -1 (SAM's "not a point").
    """
    fn, fp = error_regions(pred, truth)
    d_fn = distance_to_border(fn).flatten(1)
    d_fp = distance_to_border(fp).flatten(1)
    best_fn, at_fn = d_fn.max(1)
    best_fp, at_fp = d_fp.max(1)
    positive = best_fn >= best_fp
    flat = torch.where(positive, at_fn, at_fp)
    W = truth.shape[-1]
    xy = torch.stack([flat % W, flat // W], dim=1).float()
    labels = positive.float()
    labels[(best_fn == 0) & (best_fp == 0)] = -1.0
    return xy, labels


def to_low_res(xy: torch.Tensor, image_size: int, low_res: int) -> torch.Tensor:
    """Pixel indices at low resolution -> pixel coordinates in the model input (centre of the covered block)."""
    scale = image_size / low_res
    return xy * scale + (scale - 1) / 2


# ---------------------------------------------------------------------------------------------------------
# The model, one prompt batch at a time
# ---------------------------------------------------------------------------------------------------------
def encode_images(model: Sam, images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 scenes at the model's input size -> image embeddings (B, C, h, w)."""
    x = images.to(model.pixel_mean.device).permute(0, 3, 1, 2).float()  # (B, H, W, 3) -> (B, 3, H, W)
    return model.image_encoder((x - model.pixel_mean) / model.pixel_std)


def decode(
    model: Sam,
    image_embeddings: torch.Tensor,
    image_index: torch.Tensor,
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask_output: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of many images at once: prompt i belongs to image image_index[i].

    Shapes: image_embeddings (B, C, h, w); point_coords (N, K, 2), point_labels (N, K), boxes (N, 4),
    mask_input (N, 1, 4h, 4w). Returns low-res logits (N, M, 4h, 4w) and IoU predictions (N, M).
    The prompts may live on the CPU (where the random clicks are drawn): they move to the embeddings' device.
    """
    device = image_embeddings.device
    point_coords, point_labels, boxes, mask_input = (
        None if t is None else t.to(device) for t in (point_coords, point_labels, boxes, mask_input)
    )
    points = None if point_coords is None or point_coords.shape[1] == 0 else (point_coords, point_labels)
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
    return model.mask_decoder(
        image_embeddings=image_embeddings[image_index.to(device)],  # (N, C, h, w): one embedding per prompt
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
    )


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def training_batch(step: int, cfg: TrainConfig, scene_config: SceneConfig, rank: int = 0, world: int = 1):
    """The scenes and targets of one step (deterministic in (cfg.seed, step)).

    With `world` workers, worker `rank` takes its own share of the step's images_per_step scenes; the shares
    of all workers together are the whole batch, whatever the number of workers.

    Returns images (B, S, S, 3) uint8, targets (P, S, S) bool, image_index (P,), is_box (P,) bool,
    with B = images_per_step / world and P = B * prompts_per_image.
    """
    B, K = cfg.images_per_step // world, cfg.prompts_per_image
    scenes, targets, image_index, is_box = [], [], [], []
    for i, scene_index in enumerate(range(step * cfg.images_per_step + rank * B, step * cfg.images_per_step + (rank + 1) * B)):
        scene = make_scene(TRAIN_SEED + cfg.seed, scene_index, scene_config)
        rng = np.random.default_rng([cfg.seed, step, scene_index])  # one stream per scene: any split agrees
        n = len(scene.masks)
        scenes.append(scene)
        targets.append(scene.masks[rng.choice(n, size=K, replace=n < K)])
        image_index += [i] * K
        is_box.append(rng.random(K) < cfg.box_fraction)
    images = torch.from_numpy(np.stack([scene.image for scene in scenes]))
    targets = torch.from_numpy(np.concatenate(targets))
    return images, targets, torch.tensor(image_index), torch.from_numpy(np.concatenate(is_box))


def training_loss(
    model: Sam, step: int, cfg: TrainConfig, scene_config: SceneConfig, rank: int = 0, world: int = 1, batch=None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The loss of one step with simulated interaction (see the module docstring).

    With several workers, each returns its share: the shares add up to the loss of the whole batch.
    `batch` is training_batch(step, cfg, scene_config, rank, world) when it was made ahead (by a data loader).
    The model may sit on a GPU; by default the random prompts are drawn on the CPU, so that a seed draws the
    same clicks everywhere. A `generator` on the GPU draws them there instead (faster, other clicks).
    """
    if generator is None:
        generator = torch.Generator().manual_seed((cfg.seed * 1_000_003 + step) * world + rank)
    images, targets, image_index, is_box = batch if batch is not None else training_batch(step, cfg, scene_config, rank, world)
    targets = targets.to(generator.device)
    S = model.image_encoder.img_size
    low = model.prompt_encoder.mask_input_size[0]
    embeddings = encode_images(model, images)
    low_targets = F.adaptive_avg_pool2d(targets[:, None].float(), low)  # (P, 1, low, low), soft at borders
    device_targets = low_targets.to(embeddings.device)
    first_points = random_points_in(targets, generator)  # (P, 2)
    boxes = jitter_boxes(mask_boxes(targets), S, generator)  # (P, 4)

    sums = {"loss": 0.0, "focal": 0.0, "dice": 0.0, "iou_mse": 0.0}
    first_iou = []
    P = cfg.images_per_step * cfg.prompts_per_image  # of the whole batch, over all workers
    for group in (~is_box, is_box):
        idx = group.nonzero()[:, 0]
        n = len(idx)
        if n == 0:
            continue
        box_group = bool(is_box[idx[0]])
        if box_group:
            coords, labels = torch.zeros(n, 0, 2, device=targets.device), torch.zeros(n, 0, device=targets.device)
        else:
            coords, labels = first_points[idx][:, None], torch.ones(n, 1, device=targets.device)
        mask_input = None
        for round_ in range(cfg.clicks):
            logits, iou_pred = decode(
                model, embeddings, image_index[idx], coords, labels,
                boxes[idx] if box_group else None, mask_input,
                multimask_output=round_ == 0 and not box_group,  # one point is ambiguous; more is not
            )
            parts = sam_loss(logits, iou_pred, device_targets[idx.to(device_targets.device)], focal_alpha=cfg.focal_alpha)
            weight = n / (P * cfg.clicks)
            sums["loss"] = sums["loss"] + weight * parts.total
            for key in ("focal", "dice", "iou_mse"):
                sums[key] += weight * float(getattr(parts, key).detach())
            if round_ == 0:
                first_iou.append(parts.true_iou.gather(1, parts.best[:, None]))
            if round_ + 1 < cfg.clicks:
                best = logits.detach()[torch.arange(n, device=logits.device), parts.best]  # (n, low, low)
                xy, new_labels = sample_error_clicks((best > 0).to(generator.device), low_targets[idx, 0] > 0.5, generator)
                coords = torch.cat([coords, to_low_res(xy, S, low)[:, None]], dim=1)
                labels = torch.cat([labels, new_labels[:, None]], dim=1)
                mask_input = best[:, None]
    sums["first_iou"] = float(torch.cat(first_iou).sum()) / P
    return sums


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_fraction."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: Sam, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, embeddings and position tables."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        plain_weight = param.ndim >= 2 and not any(k in name for k in ("pos", "embed.weight", "token", "embeddings"))
        (decay if plain_weight else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def train(
    cfg: TrainConfig = TrainConfig(),
    model_name: str = "tiny",
    scene_config: SceneConfig | None = None,
    work_dir: str | os.PathLike = "runs/train-tiny",
    resume: bool = True,
    progress: bool = True,
    workers: int = 1,
) -> tuple[Sam, list[dict]]:
    """Train (or resume training) a SAM of config `model_name` from scratch.

    Saves `work_dir`/state.pt every cfg.save_every steps and appends to `work_dir`/loss_log.csv.
    With `workers` > 1, that many processes (one CPU thread each) split every batch and add up their
    gradients before each optimizer step: the same recipe, in less wall time on a multi-core CPU.
    Returns the trained model (eval mode) and the loss log (one dict per logged step).
    """
    model_config = CONFIGS[model_name]
    scene_config = scene_config or SceneConfig(image_size=model_config.image_size)
    if cfg.images_per_step % workers:
        raise ValueError(f"workers: expected a divisor of images_per_step={cfg.images_per_step}, got {workers}")
    job = (cfg, model_name, model_config, scene_config, Path(work_dir), resume, progress)
    if workers == 1:
        return _train_worker(0, 1, None, *job)
    import torch.multiprocessing as mp

    mp.spawn(_train_worker, args=(workers, (_free_port(), os.getpid()), *job), nprocs=workers, join=True)
    state = torch.load(Path(work_dir) / "state.pt", map_location="cpu", weights_only=True)
    model = build_sam(model_config)
    model.load_state_dict(state["model"])
    model.eval()
    model.training_seconds = float(state["elapsed"])
    return model, _read_log(Path(work_dir) / "loss_log.csv", before=cfg.steps)


def _read_log(path: Path, before: int) -> list[dict]:
    """The rows of a loss log with step < `before`, as dicts of floats."""
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f) if int(row["step"]) < before]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over all workers, in place, with one collective call."""
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def _train_worker(rank, world, parent, cfg, model_name, model_config, scene_config, work_dir, resume, progress):
    """The training loop of one worker; worker 0 keeps the log, the saved state and the progress bar."""
    from tqdm.auto import tqdm

    if world > 1:
        import torch.distributed as dist

        torch.set_num_threads(1)
        port, parent_pid = parent
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    lead = rank == 0
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path = work_dir / "state.pt", work_dir / "loss_log.csv"

    torch.manual_seed(cfg.seed)
    model = build_sam(model_config).train()
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    start, elapsed, log = 0, 0.0, []
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["train_config"] == _jsonable(asdict(cfg)) and state["model_name"] == model_name:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start, elapsed = int(state["step"]), float(state["elapsed"])
        elif lead:
            print(f"{state_path} belongs to another recipe; starting from scratch.")
    fields = ["step", "loss", "focal", "dice", "iou_mse", "first_iou", "lr", "seconds"]
    if lead:
        if log_path.exists() and start > 0:
            log = _read_log(log_path, before=start)
        with open(log_path, "w", newline="") as f:  # rewrite: drop rows after the last saved state
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(log)

    def save_state(step: int) -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": step, "elapsed": elapsed, "train_config": _jsonable(asdict(cfg)), "model_name": model_name},
            tmp,
        )
        os.replace(tmp, state_path)  # never leave a half-written state behind

    keys = ("loss", "focal", "dice", "iou_mse", "first_iou")
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train-tiny", disable=not (progress and lead))
    t0 = time.perf_counter() - elapsed
    for step in bar:
        if world > 1 and os.getppid() != parent_pid:  # the parent was killed: do not go on writing its files
            raise SystemExit(f"train-tiny worker {rank}: the parent process is gone; stopping")
        parts = training_loss(model, step, cfg, scene_config, rank, world)
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        figures = torch.tensor([float(parts[k].detach()) if torch.is_tensor(parts[k]) else parts[k] for k in keys])
        if world > 1:  # every worker ends with the gradient of the whole batch
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
            _all_reduce_sum(grads + [figures])
            for p, g in zip(model.parameters(), grads):
                p.grad = g
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        elapsed = time.perf_counter() - t0
        if not lead:
            continue
        row = {"step": step, **dict(zip(keys, figures.tolist())), "lr": optimizer.param_groups[0]["lr"], "seconds": round(elapsed, 2)}
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.append(row)
            with open(log_path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=fields).writerow(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", iou=f"{row['first_iou']:.2f}")
        if (step + 1) % cfg.save_every == 0 or step == cfg.steps - 1:
            save_state(step + 1)
    if world > 1:
        dist.destroy_process_group()
        return None
    model.eval()
    model.training_seconds = elapsed
    return model, log


def _jsonable(data):
    return json.loads(json.dumps(data))


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate(
    model: Sam,
    num_scenes: int = 200,
    seed: int = HELDOUT_SEED,
    scene_config: SceneConfig | None = None,
    first_scene: int = 0,
    clicks: int = 3,
    progress: bool = False,
) -> dict:
    """The model card's figures on held-out scenes, for every instance of every scene.

    single_click_miou: mIoU of the mask the model rates best (predicted IoU) after one random interior click;
    single_click_best_of_3_miou: of the best of its three masks; two/three_clicks_miou: after corrective clicks
    at the centre of the largest error (single-mask output, previous logits fed back); box_miou: from the tight
    box; iou_prediction_correlation: Pearson correlation of predicted and true IoU over the three masks.
    """
    from tqdm.auto import tqdm

    model.eval()
    S = model.image_encoder.img_size
    scene_config = scene_config or SceneConfig(image_size=S)
    results = {"single": [], "best": [], "clicks": [[] for _ in range(clicks)], "box": [], "pred": [], "true": []}
    for index in tqdm(range(first_scene, first_scene + num_scenes), disable=not progress, desc="evaluate"):
        scene = make_scene(seed, index, scene_config)
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        truth = torch.from_numpy(scene.masks)  # (N, S, S)
        n = len(truth)
        embeddings = encode_images(model, torch.from_numpy(scene.image)[None])
        image_index = torch.zeros(n, dtype=torch.long)

        def full_res(logits):  # on the CPU, beside the truth
            return model.postprocess_masks(logits, (S, S), (S, S)).cpu() > model.mask_threshold

        coords = random_points_in(truth, generator)[:, None]  # (N, 1, 2)
        labels = torch.ones(n, 1)
        logits, iou_pred = decode(model, embeddings, image_index, coords, labels, None, None, True)
        logits, iou_pred = logits.cpu(), iou_pred.cpu()
        ious = mask_iou(model.postprocess_masks(logits, (S, S), (S, S)), truth[:, None].float())  # (N, 3)
        chosen = iou_pred.argmax(1)
        results["single"].append(ious.gather(1, chosen[:, None])[:, 0])
        results["best"].append(ious.max(1).values)
        results["pred"].append(iou_pred.flatten())
        results["true"].append(ious.flatten())
        results["clicks"][0].append(results["single"][-1])
        previous = logits[torch.arange(n), chosen][:, None]  # (N, 1, low, low)
        for round_ in range(1, clicks):
            xy, new_labels = center_error_clicks(full_res(previous)[:, 0], truth)
            coords = torch.cat([coords, xy[:, None]], dim=1)
            labels = torch.cat([labels, new_labels[:, None]], dim=1)
            previous = decode(model, embeddings, image_index, coords, labels, None, previous, False)[0].cpu()
            results["clicks"][round_].append(mask_iou(model.postprocess_masks(previous, (S, S), (S, S)), truth[:, None].float())[:, 0])
        logits = decode(model, embeddings, image_index, None, None, mask_boxes(truth), None, False)[0].cpu()
        results["box"].append(mask_iou(model.postprocess_masks(logits, (S, S), (S, S)), truth[:, None].float())[:, 0])

    def mean(key):
        return round(float(torch.cat(results[key]).mean()), 4)

    pred, true = torch.cat(results["pred"]), torch.cat(results["true"])
    figures = {
        "single_click_miou": mean("single"),
        "single_click_best_of_3_miou": mean("best"),
        "two_clicks_miou": round(float(torch.cat(results["clicks"][1]).mean()), 4) if clicks > 1 else None,
        "three_clicks_miou": round(float(torch.cat(results["clicks"][-1]).mean()), 4),
        "box_miou": mean("box"),
        "iou_prediction_correlation": round(float(torch.corrcoef(torch.stack([pred, true]))[0, 1]), 4),
        "num_scenes": num_scenes,
        "num_instances": int(sum(len(x) for x in results["single"])),
        "heldout_seed": seed,
    }
    return figures


# ---------------------------------------------------------------------------------------------------------
# The bundled model: checkpoint + card, and the `train-tiny` command
# ---------------------------------------------------------------------------------------------------------
TINY_DIR = DATA_DIR / "tiny"
CARD_NAME = "card.json"
CHECKPOINT_NAME = "sam_tiny.pt"


def write_card(path: str | os.PathLike, model_name: str, cfg: TrainConfig, figures: dict, seconds: dict) -> dict:
    """The model card: architecture, recipe, seeds, training time and the held-out figures, as JSON."""
    card = {
        "model": model_name,
        "config": config_dict(CONFIGS[model_name]),
        "train_config": asdict(cfg),
        "scene_config": _jsonable(asdict(SceneConfig(image_size=CONFIGS[model_name].image_size))),
        "training_seed": cfg.seed,
        "train_split_seed": TRAIN_SEED + cfg.seed,
        "steps": cfg.steps,
        "training_images": cfg.steps * cfg.images_per_step,
        "training_time": seconds,
        "evaluation": figures,
        "torch_version": torch.__version__,
        "command": f"python -m sam_from_scratch train-tiny --steps {cfg.steps}",
    }
    Path(path).write_text(json.dumps(card, indent=2) + "\n")
    return card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps, help=f"optimizer steps (default {defaults.steps})")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="training seed (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="training processes, one CPU core each (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch outside the workers (default 2)")
    parser.add_argument("--out", default=str(TINY_DIR), help="folder for sam_tiny.pt and card.json (default sam_from_scratch/data/tiny)")
    parser.add_argument("--work-dir", default="runs/train-tiny", help="resumable state and loss log (default runs/train-tiny)")
    parser.add_argument("--fresh", action="store_true", help="ignore a saved state and start from scratch")
    parser.add_argument("--eval-scenes", type=int, default=300, help="held-out scenes for the card's figures (default 300)")
    parser.add_argument("--eval-only", action="store_true", help="only re-measure the figures of OUT/sam_tiny.pt")


def run(args: argparse.Namespace) -> int:
    """`python -m sam_from_scratch train-tiny`: train, save the checkpoint, evaluate, write the card."""
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = replace(TrainConfig(), steps=args.steps, seed=args.seed)
    if args.eval_only:
        model = build_sam(CONFIGS["tiny"], checkpoint=out / CHECKPOINT_NAME)
        print(json.dumps(evaluate(model, num_scenes=args.eval_scenes, progress=True), indent=2))
        return 0
    model, log = train(cfg, "tiny", work_dir=args.work_dir, resume=not args.fresh, workers=args.workers)
    seconds = {"wall_seconds": round(model.training_seconds, 1), "workers": args.workers,
               "threads_per_worker": 1 if args.workers > 1 else args.threads}
    torch.save(model.state_dict(), out / CHECKPOINT_NAME)
    print(f"saved {out / CHECKPOINT_NAME}; evaluating on {args.eval_scenes} held-out scenes")
    figures = evaluate(model, num_scenes=args.eval_scenes, progress=True)
    write_card(out / CARD_NAME, "tiny", cfg, figures, seconds)
    print(json.dumps(figures, indent=2))
    return 0
