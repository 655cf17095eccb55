"""Training a small SAM with SAM's own recipe, on scenes from our data engine.

One training step:
  1. draw a batch of generated scenes and run the image encoder once per image;
  2. pick a few objects per image and give each a first prompt: a random point inside it, or its box;
  3. simulate a user for `clicks` rounds: decode, score the masks against the truth (losses.py), then add a
     click where the prediction is wrong (prompts.py) and feed the previous mask logits back in as the mask
     prompt;
  4. one optimizer step on the mean loss of all rounds.

Everything random is derived from (seed, step), and the state is saved every `save_every` steps, so an
interrupted run resumes where it stopped and ends with the same weights. With several workers, each process
takes its share of every batch and DistributedDataParallel averages their gradients before each step.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..build import build_sam
from ..config import CONFIGS, SamConfig
from ..errors import (SamInputError, check_choice, check_int, check_number, check_switch, expand_user, input_error,
                      is_number)
from ..modeling.sam import Sam
from ..utils.amg import batched_mask_to_box
from ..utils.checks import check_path
from .forward import decode, encode_images
from .losses import sam_loss
from .prompts import jitter_boxes, low_res_to_input, random_points_in, sample_error_clicks, seeded_generator
from .scenes import TRAIN_SEED, SceneConfig, make_scene


@dataclass(frozen=True)
class TrainConfig:
    """The recipe of the bundled tiny model (change `steps` for a quick demo)."""

    steps: int = 21600
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

    def __post_init__(self) -> None:
        """Refuse a recipe that cannot train, naming the field (a zero or a fraction failed deep inside a step)."""
        for name in ("steps", "images_per_step", "prompts_per_image", "clicks", "save_every", "log_every"):
            check_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "seed"):
            check_int(name, getattr(self, name), 0)
        for name in ("box_fraction", "min_lr_fraction"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        check_number("weight_decay", self.weight_decay, 0.0)
        for name in ("lr", "grad_clip"):  # a step of 0, or gradients clipped to 0, would train nothing
            if not (is_number(getattr(self, name)) and 0 < getattr(self, name) < math.inf):
                raise input_error(name, "a finite number > 0", getattr(self, name))
        if not (is_number(self.focal_alpha) and -math.inf < self.focal_alpha <= 1):
            raise input_error("focal_alpha", "a weight in [0, 1], or a negative number for no weighting",
                              self.focal_alpha)
        for field in fields(self):  # numpy's numbers as Python's (int or float, as the default): the saved state
            object.__setattr__(self, field.name, type(field.default)(getattr(self, field.name)))  # records JSON


LOG_FIELDS = ["step", "loss", "focal", "dice", "iou_mse", "first_iou", "lr", "seconds"]
FIGURES = ("loss", "focal", "dice", "iou_mse", "first_iou")  # what batch_loss reports


# ---------------------------------------------------------------------------------------------------------
# One step
# ---------------------------------------------------------------------------------------------------------
def training_batch(step: int, cfg: TrainConfig, scene_config: SceneConfig, rank: int = 0, world: int = 1):
    """The scenes and targets of one step (deterministic in (cfg.seed, step)).

    With `world` workers, worker `rank` takes its own share of the step's images_per_step scenes; the shares
    of all workers together are the whole batch, whatever the number of workers.

    Returns images (B, S, S, 3) uint8, targets (P, S, S) bool, image_index (P,), is_box (P,) bool,
    with B = images_per_step / world and P = B * prompts_per_image.
    """
    B, K = cfg.images_per_step // world, cfg.prompts_per_image
    first = step * cfg.images_per_step + rank * B
    scenes, targets, image_index, is_box = [], [], [], []
    for i, scene_index in enumerate(range(first, first + B)):
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


def prompt_generator(cfg: TrainConfig, step: int, rank: int = 0, world: int = 1) -> torch.Generator:
    """The random stream of worker `rank`'s clicks in step `step`.

    It lives on the CPU, so that a seed draws the same clicks whether the model sits on a CPU or a GPU.
    """
    return seeded_generator((cfg.seed * 1_000_003 + step) * world + rank)


def batch_loss(model: Sam, batch, cfg: TrainConfig, generator, distill=None) -> dict:
    """The loss of one batch with simulated interaction (see the module docstring).

    Args:
        batch: what `training_batch` returns.
        generator: draws the first points, the box jitter and the corrective clicks, on its own device
            (a GPU generator keeps the whole step on the GPU: faster, other clicks than the CPU's). Or a list
            of generators, one per image of the batch: each image's prompts are then drawn from its own, so
            that they do not depend on which images share the batch (fine-tuning's split between processes).
        distill: None, or (teacher, replayed (B,) bool, weight): on the prompts of the images marked replayed,
            each round's masks are also pulled towards the teacher's for the same prompts (its logits as soft
            targets, times weight) and the IoU predictions towards its predictions (fine-tuning's replay).

    Returns:
        "loss": the mean over the batch's prompts and rounds, a tensor to backpropagate; "focal", "dice",
        "iou_mse": its parts, and "first_iou": the mean IoU of the first round's masks, as floats.
    """
    images, targets, image_index, is_box = batch
    device = (generator[0] if isinstance(generator, (list, tuple)) else generator).device
    targets = targets.to(device)
    S = model.image_encoder.img_size
    low = model.prompt_encoder.mask_input_size[0]
    embeddings = encode_images(model, images)
    low_targets = F.adaptive_avg_pool2d(targets[:, None].float(), low)  # (P, 1, low, low), soft at borders
    device_targets = low_targets.to(embeddings.device)
    every = torch.arange(len(targets))

    def draw(rows: torch.Tensor, function, *tensors):
        """function(*tensors, generator) for the prompts `rows`: at once, or image by image."""
        if not isinstance(generator, (list, tuple)):
            return function(*tensors, generator)
        owners = image_index[rows.cpu()]
        parts = [(owners == i).nonzero()[:, 0] for i in owners.unique().tolist()]  # positions within rows
        results = [function(*(t[at.to(t.device)] for t in tensors), generator[int(owners[at[0]])]) for at in parts]
        order = torch.cat(parts).argsort()  # back to the order of `rows`
        if isinstance(results[0], tuple):
            return tuple(torch.cat(r)[order.to(r[0].device)] for r in zip(*results))
        return torch.cat(results)[order.to(results[0].device)]

    first_points = draw(every, random_points_in, targets)  # (P, 2)
    boxes = draw(every, lambda b, g: jitter_boxes(b, S, g), batched_mask_to_box(targets).float())  # (P, 4)

    sums = {"loss": 0.0, "focal": 0.0, "dice": 0.0, "iou_mse": 0.0}
    first_iou = []
    P = len(targets)
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
            weight = n / (P * cfg.clicks)  # sam_loss is a mean over this group's n prompts
            sums["loss"] = sums["loss"] + weight * parts.total
            if distill is not None:
                teacher, replayed, strength = distill
                rows = replayed[image_index[idx.cpu()]].nonzero()[:, 0].to(logits.device)  # this group's replayed
                if len(rows):
                    with torch.no_grad():
                        soft, rated = decode(
                            teacher, embeddings, image_index[idx], coords, labels,
                            boxes[idx] if box_group else None, mask_input, multimask_output=round_ == 0 and not box_group,
                        )
                    kept = (strength * F.binary_cross_entropy_with_logits(logits[rows], torch.sigmoid(soft[rows]))
                            + F.mse_loss(iou_pred[rows], rated[rows]))
                    sums["loss"] = sums["loss"] + kept * len(rows) / (P * cfg.clicks)  # as each prompt above
            for key in ("focal", "dice", "iou_mse"):
                sums[key] += weight * float(getattr(parts, key).detach())
            if round_ == 0:
                first_iou.append(parts.true_iou.gather(1, parts.best[:, None]))
            if round_ + 1 < cfg.clicks:
                best = logits.detach()[torch.arange(n, device=logits.device), parts.best]  # (n, low, low)
                xy, new_labels = draw(idx, sample_error_clicks, (best > 0).to(device), low_targets[idx, 0] > 0.5)
                coords = torch.cat([coords, low_res_to_input(xy, S, low)[:, None]], dim=1)
                labels = torch.cat([labels, new_labels[:, None]], dim=1)
                mask_input = best[:, None]
    sums["first_iou"] = float(torch.cat(first_iou).sum()) / P
    return sums


def training_loss(
    model: Sam, step: int, cfg: TrainConfig, scene_config: SceneConfig, rank: int = 0, world: int = 1
) -> dict:
    """`batch_loss` of worker `rank`'s share of step `step`, with that share's own clicks.

    Every share has as many prompts as the others, so the mean of the workers' losses is the loss of the
    whole batch, and the mean of their gradients (what DistributedDataParallel computes) is its gradient.
    """
    batch = training_batch(step, cfg, scene_config, rank, world)
    return batch_loss(model, batch, cfg, prompt_generator(cfg, step, rank, world))


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


# ---------------------------------------------------------------------------------------------------------
# The run: workers, saved state, loss log
# ---------------------------------------------------------------------------------------------------------
def check_workers(cfg: TrainConfig, workers: int) -> None:
    """Every worker takes an equal share of the batch, so `workers` must divide images_per_step."""
    if workers < 1 or cfg.images_per_step % workers:
        raise ValueError(f"workers: expected a divisor of images_per_step={cfg.images_per_step}, got {workers}")


def optimizer_step(parts: dict, params, optimizer, scheduler, cfg: TrainConfig, world: int) -> torch.Tensor:
    """One update from a step's loss parts; returns the FIGURES of the whole batch (the mean over workers)."""
    optimizer.zero_grad(set_to_none=True)
    parts["loss"].backward()  # with several workers, every one ends with the mean of their gradients
    figures = torch.tensor([float(parts["loss"].detach()), *(float(parts[k]) for k in FIGURES[1:])])
    if world > 1:  # the log shows the whole batch: the mean of the shares
        dist.all_reduce(figures)
        figures /= world
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    optimizer.step()
    scheduler.step()
    return figures


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
    With `resume`, a run saved there with the same recipe goes on from its last saved step; a run of another
    recipe is refused, not replaced (resume=False starts over and replaces its two files).
    With `workers` > 1, that many processes (one CPU thread each) split every batch and average their
    gradients over gloo before each optimizer step: the same recipe, in less wall time on a multi-core CPU.
    Returns the trained model (eval mode) and the loss log (one dict per logged step).
    """
    if not isinstance(cfg, TrainConfig):
        raise input_error("cfg", "a TrainConfig, e.g. TrainConfig(steps=200)", cfg)
    check_choice("model_name", model_name, CONFIGS)
    if scene_config is not None and not isinstance(scene_config, SceneConfig):
        raise input_error("scene_config", "a SceneConfig or None", scene_config)
    check_path("work_dir", work_dir, "a folder path (a str or a Path)")
    check_switch("resume", resume)
    check_switch("progress", progress)
    check_int("workers", workers, 1)
    check_workers(cfg, workers)
    work_dir = expand_user("work_dir", work_dir, "a folder path")  # ~/runs as a shell reads it
    check_work_dir(work_dir, cfg, model_name, resume)
    model_config = CONFIGS[model_name]
    scene_config = scene_config or SceneConfig(image_size=model_config.image_size)
    job = (cfg, model_name, model_config, scene_config, Path(work_dir), resume, progress)
    if workers == 1:
        return _run(0, 1, *job)
    # The workers meet through a file store: no port to pick, and nothing left behind.
    with tempfile.TemporaryDirectory(prefix="train-rendezvous-") as rendezvous:
        mp.spawn(_train_worker, args=(workers, Path(rendezvous) / "store", *job), nprocs=workers, join=True)
    return _load_trained(cfg, model_config, work_dir)


def _train_worker(rank: int, world: int, store: Path, *job) -> None:
    """One spawned worker. torch.multiprocessing makes it receive SIGINT when the parent dies, so it never
    goes on writing the run's files alone."""
    torch.set_num_threads(1)  # one core per worker
    dist.init_process_group("gloo", init_method=store.as_uri(), rank=rank, world_size=world)
    try:
        _run(rank, world, *job)
    finally:
        dist.destroy_process_group()


class _StepLoss(nn.Module):
    """`training_loss` as a module: DistributedDataParallel hooks the gradient averaging into its forward."""

    def __init__(self, model: Sam, cfg: TrainConfig, scene_config: SceneConfig) -> None:
        super().__init__()
        self.model, self.cfg, self.scene_config = model, cfg, scene_config

    def forward(self, step: int, rank: int, world: int) -> dict:
        return training_loss(self.model, step, self.cfg, self.scene_config, rank, world)


def _run(rank, world, cfg, model_name, model_config, scene_config, work_dir, resume, progress):
    """The training loop of one worker; worker 0 keeps the log, the saved state and the progress bar."""
    from tqdm.auto import tqdm

    lead = rank == 0
    state_path = work_dir / "state.pt"
    torch.manual_seed(cfg.seed % 2**64)  # torch takes 64 bits; seeds below that are unchanged
    model = build_sam(model_config).train()
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    start, elapsed = 0, 0.0
    if resume and state_path.exists():  # of this recipe: check_work_dir refused another
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, elapsed = int(state["step"]), float(state["elapsed"])
    log = _LossLog(work_dir / "loss_log.csv", start) if lead else None

    def save_state(step: int) -> None:
        log.write_kept_rows()  # the log never runs behind the state it belongs to
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "step": step, "elapsed": elapsed, "train_config": _jsonable(asdict(cfg)), "model_name": model_name}
        write_atomically(state_path, lambda tmp: torch.save(state, tmp))

    step_loss = _StepLoss(model, cfg, scene_config)
    if world > 1:
        # A share may hold no box prompt, so the box embeddings can be unused on one worker and not the other.
        # No buffer changes, so none is sent at each step; torch before 2.13 names that switch broadcast_buffers.
        keywords = inspect.signature(DistributedDataParallel).parameters
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in keywords else "broadcast_buffers"
        step_loss = DistributedDataParallel(step_loss, find_unused_parameters=True, **{no_sync: False})
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train-tiny", disable=not (progress and lead))
    t0 = time.perf_counter() - elapsed
    for step in bar:
        figures = optimizer_step(step_loss(step, rank, world), model.parameters(), optimizer, scheduler, cfg, world)
        elapsed = time.perf_counter() - t0
        if not lead:
            continue
        row = {"step": step, **dict(zip(FIGURES, figures.tolist())), "lr": optimizer.param_groups[0]["lr"],
               "seconds": round(elapsed, 2)}
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", iou=f"{row['first_iou']:.2f}")
        if (step + 1) % cfg.save_every == 0 or step == cfg.steps - 1:
            save_state(step + 1)
    model.eval()
    model.training_seconds = elapsed
    return model, log.rows if lead else []


STATE_KEYS = {"model", "optimizer", "scheduler", "step", "elapsed", "train_config", "model_name"}


def check_work_dir(work_dir: Path, cfg: TrainConfig, model_name: str, resume: bool,
                   start_over: str = "resume=False") -> None:
    """`work_dir` is new, or holds what train() writes there; with `resume`, a run of this recipe. Refused: a
    file, a state.pt or loss_log.csv that train() did not write, and (with `resume`) another recipe's run, which
    would be replaced. `start_over` is how the caller says "start over" (train_tiny: fresh=True)."""
    if work_dir.exists() and not work_dir.is_dir():
        raise SamInputError(f"work_dir: expected a folder for the run's state.pt and loss_log.csv, got {work_dir}, "
                            "which is a file.")
    log_path, state_path = work_dir / "loss_log.csv", work_dir / "state.pt"
    if log_path.exists() and not _is_loss_log(log_path):
        raise SamInputError(f"work_dir: expected a folder without a loss_log.csv or with one train() wrote, got "
                            f"{work_dir}, whose loss_log.csv does not start with train()'s header; training would "
                            "overwrite it. Pass another work_dir.")
    if not state_path.exists():
        return
    try:  # mapped, not read: only the recipe is looked at here
        state = torch.load(state_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - whatever torch makes of a file that is not its own
        state = None
    if not (isinstance(state, dict) and STATE_KEYS <= state.keys()):
        raise SamInputError(f"work_dir: expected a folder without a state.pt or with one train() saved, got "
                            f"{work_dir}, whose state.pt is not a training state; training would overwrite it. "
                            "Pass another work_dir.")
    if not resume:
        return
    theirs, ours = state["train_config"], _jsonable(asdict(cfg))
    changed = [f"{name} {theirs.get(name)!r} there, {value!r} here" for name, value in ours.items()
               if theirs.get(name) != value]
    if state["model_name"] != model_name:
        changed.insert(0, f"model_name {state['model_name']!r} there, {model_name!r} here")
    if changed:
        raise SamInputError(
            f"work_dir: expected a new folder or a run of this recipe to resume, got {work_dir}, whose state.pt "
            f"(step {int(state['step'])}) is another recipe's: {'; '.join(changed)}. Pass another work_dir, or "
            f"{start_over} to start over in this one (its state.pt and loss_log.csv are then replaced)."
        )


def _is_loss_log(path: Path) -> bool:
    try:
        with open(path, newline="") as f:
            return f.readline().strip() == ",".join(LOG_FIELDS)
    except (OSError, UnicodeDecodeError):
        return False


class _LossLog:
    """loss_log.csv, kept by the lead worker.

    A resumed run keeps the rows before its saved state and drops the rest (they are logged again). The file
    is rewritten with the kept rows only when there is something new to add, so that a run stopped before its
    first step leaves no file behind.
    """

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.rows = _read_log(path, before=start) if start > 0 and path.exists() else []
        self.written = False

    def write_kept_rows(self) -> None:
        if self.written:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)
        self.written = True

    def append(self, row: dict) -> None:
        self.write_kept_rows()
        self.rows.append(row)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow(row)


def _load_trained(cfg: TrainConfig, model_config: SamConfig, work_dir: str | os.PathLike) -> tuple[Sam, list[dict]]:
    """The model and log the workers left in work_dir."""
    state = torch.load(Path(work_dir) / "state.pt", map_location="cpu", weights_only=True)
    model = build_sam(model_config)
    model.load_state_dict(state["model"])
    model.eval()
    model.training_seconds = float(state["elapsed"])
    return model, _read_log(Path(work_dir) / "loss_log.csv", before=cfg.steps)


def _read_log(path: Path, before: int) -> list[dict]:
    """The rows of a loss log with step < `before`: the step an int, the rest floats (a log rewritten by an
    older version may hold the step as "10.0")."""
    with open(path) as f:
        rows = [{k: int(float(v)) if k == "step" else float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    return [row for row in rows if row["step"] < before]


def _jsonable(data):
    return json.loads(json.dumps(data))


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """`write(tmp)` into a temporary file beside `path`, then rename it over `path`.

    The rename is atomic: a reader (or a run interrupted half-way) sees the old file or the new one, never a
    half-written one; the temporary file does not outlive a failed write.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: os.replace cannot cross disks
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
