"""The bundled small model: `train_tiny` retrains it from scratch and writes its checkpoint and model card.

`python -m sam_from_scratch train-tiny --replace-bundled --workers 1 --threads 1` calls
`train_tiny(TINY_DIR, workers=1, threads=1, work_dir="runs/train-tiny/state")` (the resumable state outside
the package) and reproduces sam_from_scratch/data/tiny/sam_tiny.pt (the clicks drawn depend on the number of
workers; without --replace-bundled it writes to a run folder); the card (card.json) records the architecture, the recipe, the seeds,
the training time and the figures measured on held-out scenes. A run folder that holds files of anyone else's
is refused; one holding an earlier run's own files is where that run goes on.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..build import build_sam
from ..config import CONFIGS, TINY_CHECKPOINT, config_dict
from ..errors import SamInputError, check_int, check_switch, expand_user
from ..utils.checks import check_path
from .evaluation import evaluate
from .loop import TrainConfig, check_work_dir, check_workers, train, write_atomically
from .scenes import TRAIN_SEED, SceneConfig

TINY_DIR = TINY_CHECKPOINT.parent
CHECKPOINT_NAME = TINY_CHECKPOINT.name
CARD_NAME = "card.json"
STATE_DIR_NAME = "state"  # inside `out` unless another work_dir is given
STATE_FILES = ("state.pt", "loss_log.csv")  # what `train` writes into work_dir
CARD_COMMAND = "python -m sam_from_scratch train-tiny"  # how every card of ours records its command
# The automatic mask generator's filters for this model (notebook 10): it rates its masks far lower than Meta's
# models, so the official 0.88 / 0.95 keep few masks, often none. The command line uses these when the small
# model runs. Chosen on held-out scenes with benchmarks/tiny_generator_filters.py (EXPERIMENTS.md).
GENERATOR_SETTINGS = {"pred_iou_thresh": 0.5, "stability_score_offset": 0.1, "stability_score_thresh": 0.9}


def write_card(path: str | os.PathLike, model_name: str, cfg: TrainConfig, figures: dict, seconds: dict) -> dict:
    """The model card: architecture, recipe, seeds, training time and the held-out figures, as JSON.

    Written atomically; returns the card as read back from its JSON.
    """
    command = (f"python -m sam_from_scratch train-tiny --steps {cfg.steps}" + (f" --seed {cfg.seed}" if cfg.seed else "")
               + f" --workers {seconds['workers']} --threads {seconds['threads_per_worker']}")
    card = {
        "model": model_name,
        "config": config_dict(CONFIGS[model_name]),
        "train_config": asdict(cfg),
        "scene_config": asdict(SceneConfig(image_size=CONFIGS[model_name].image_size)),
        "training_seed": cfg.seed,
        "train_split_seed": TRAIN_SEED + cfg.seed,
        "steps": cfg.steps,
        "training_images": cfg.steps * cfg.images_per_step,
        "training_time": seconds,
        "evaluation": figures,
        "generator_settings": GENERATOR_SETTINGS,
        "torch_version": torch.__version__,
        "command": command,
    }
    text = json.dumps(card, indent=2) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text))
    return json.loads(text)


def train_tiny(
    out: str | os.PathLike,
    *,
    steps: int = TrainConfig.steps,
    seed: int = 0,
    workers: int = 2,
    threads: int = 2,
    work_dir: str | os.PathLike | None = None,
    fresh: bool = False,
    eval_scenes: int = 300,
    eval_only: bool = False,
    progress: bool = True,
) -> dict:
    """Train the tiny model with the shipped recipe, measure it, and write `out`/sam_tiny.pt and `out`/card.json.

    Args:
        out: folder for the checkpoint and the card (created if missing).
        steps, seed: of the recipe (TrainConfig); the shipped model used the defaults.
        workers: training processes, one CPU core each; they must divide TrainConfig.images_per_step.
        threads: torch's CPU threads in this process (training with one worker, and the evaluation).
        work_dir: the resumable state and the loss log; default `out`/state.
        fresh: ignore a saved state and start from scratch.
        eval_scenes: held-out scenes for the card's figures.
        eval_only: train nothing; measure `out`/sam_tiny.pt and return its figures.
        progress: progress bars and a summary on stdout.

    Returns:
        The card (the figures alone with eval_only). The checkpoint and the card are replaced atomically;
        a run that fails before it saves anything removes the folders it created.

    Raises:
        SamInputError: `out` or `work_dir` holds files train-tiny did not write (an earlier run's checkpoint,
            card and state are its own: a run goes on from them). The bundled model's folder is the exception.
    """
    check_train_tiny_arguments(out, steps, seed, workers, threads, work_dir, fresh, eval_scenes, eval_only, progress)
    steps, seed, workers, threads, eval_scenes = map(int, (steps, seed, workers, threads, eval_scenes))  # numpy's too
    cfg = replace(TrainConfig(), steps=steps, seed=seed)
    check_workers(cfg, workers)
    out = expand_user("out", out, "a folder path")  # ~/tiny as a shell reads it
    work_dir = out / STATE_DIR_NAME if work_dir is None else expand_user("work_dir", work_dir, "a folder path")
    if not eval_only:
        check_run_folder(out, work_dir)
        check_work_dir(work_dir, cfg, "tiny", resume=not fresh, start_over="fresh=True")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if eval_only:
            return _measure(out / CHECKPOINT_NAME, eval_scenes, progress)
        created = _missing_folders([out, work_dir])
        try:
            out.mkdir(parents=True, exist_ok=True)
            return _train_and_write(out, cfg, work_dir, workers, threads, fresh, eval_scenes, progress)
        except BaseException:
            _remove_empty(created)
            raise
    finally:
        torch.set_num_threads(previous_threads)


def check_train_tiny_arguments(out, steps, seed, workers, threads, work_dir, fresh, eval_scenes, eval_only, progress):
    """Refuse what train_tiny cannot use before anything runs (a float or a string failed mid-training)."""
    for name, value in (("steps", steps), ("workers", workers), ("threads", threads), ("eval_scenes", eval_scenes)):
        check_int(name, value, 1)
    check_int("seed", seed, 0)
    for name, value in (("fresh", fresh), ("eval_only", eval_only), ("progress", progress)):
        check_switch(name, value)
    check_path("out", out, "a folder path (a str or a Path)")
    check_path("work_dir", work_dir, "a folder path (a str or a Path)", optional=True)


def _measure(checkpoint: Path, eval_scenes: int, progress: bool) -> dict:
    if not checkpoint.is_file():
        raise FileNotFoundError(f"out: expected a trained model at {checkpoint}, found none")
    model = build_sam(CONFIGS["tiny"], checkpoint=checkpoint)
    figures = evaluate(model, num_scenes=eval_scenes, progress=progress)
    if progress:
        print(json.dumps(figures, indent=2))
    return figures


def _train_and_write(out, cfg, work_dir, workers, threads, fresh, eval_scenes, progress) -> dict:
    model, _ = train(cfg, "tiny", work_dir=work_dir, resume=not fresh, progress=progress, workers=workers)
    seconds = {"wall_seconds": round(model.training_seconds, 1), "workers": workers,
               "threads_per_worker": 1 if workers > 1 else threads}
    if progress:
        print(f"trained; evaluating on {eval_scenes} held-out scenes")
    # Measured before anything is written, so that `out` never pairs a new checkpoint with an old card.
    figures = evaluate(model, num_scenes=eval_scenes, progress=progress)
    write_atomically(out / CHECKPOINT_NAME, lambda tmp: torch.save(model.state_dict(), tmp))
    card = write_card(out / CARD_NAME, "tiny", cfg, figures, seconds)
    if progress:
        print(f"saved {out / CHECKPOINT_NAME} and {out / CARD_NAME}")
        print(json.dumps(figures, indent=2))
    return card


def check_run_folder(out: Path, work_dir: Path) -> None:
    """Refuse an `out` or `work_dir` that holds files train-tiny did not write; replacing the bundled model is
    allowed (its folder holds more than a run writes). train_tiny checks this first; the command line earlier
    still, before it says how long the run will take."""
    for argument, folder in (("out", out), ("work_dir", work_dir)):
        if folder.exists() and not folder.is_dir():
            raise SamInputError(f"{argument}: expected a folder for train-tiny's files, got {folder}, which is a file.")
    bundled = out.resolve() == TINY_DIR.resolve()
    state_dirs = {work_dir.resolve(), (out / STATE_DIR_NAME).resolve()}
    our_card = None  # whether out/card.json is train-tiny's, read once for both folders
    for argument, folder in (("out", out), ("work_dir", work_dir)):
        if not folder.is_dir() or (bundled and folder.resolve() == TINY_DIR.resolve()):
            continue
        if our_card is None:
            our_card = _is_our_card(out.resolve() / CARD_NAME)
        foreign = _foreign_files(folder.resolve(), out.resolve(), state_dirs, our_card)
        if foreign:
            names = [_described(path, folder.resolve(), out.resolve(), our_card) for path in foreign[:5]]
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            own = (f"{CHECKPOINT_NAME}, {CARD_NAME} and {STATE_DIR_NAME}/" if argument == "out"
                   else " and ".join(STATE_FILES))
            raise SamInputError(
                f"{argument}: expected a new folder or one train-tiny wrote before (its {own}), got {folder}, which "
                f"holds {', '.join(names)}{more}; train-tiny never overwrites files it did not create."
            )


def _foreign_files(folder: Path, out: Path, state_dirs: set[Path], our_card: bool) -> list[Path]:
    """What `folder` holds that train-tiny did not write: only the checkpoint and a card of ours in `out`, the
    state files in the state folders, and the folders on the way to these, are its own. Paths are resolved;
    `our_card` says whether `out`/card.json is train-tiny's (`_is_our_card`)."""
    mine = (CHECKPOINT_NAME, CARD_NAME) if folder == out else ()
    mine += STATE_FILES if folder in state_dirs else ()
    places = {out, *state_dirs}
    foreign = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink() and (path.name in mine or _is_temporary_of(path.name, mine)):
            if path.name == CARD_NAME and folder == out and not our_card:
                foreign.append(path)  # another tool's card, e.g. fine-tuning's
            elif path.name == CHECKPOINT_NAME and folder == out and not our_card:
                foreign.append(path)  # a checkpoint without our card beside it may be anyone's
        elif path.is_dir() and not path.is_symlink() and any(path == d or path in d.parents for d in places):
            foreign += _foreign_files(path, out, state_dirs, our_card)
        else:
            foreign.append(path)
    return foreign


def _described(path: Path, folder: Path, out: Path, our_card: bool) -> str:
    """`path` relative to `folder`, with why a name train-tiny writes is not its own."""
    name = str(path.relative_to(folder))
    if path.parent == out and path.name == CARD_NAME and path.is_file():
        return f"{name} (not a train-tiny card)"
    if path.parent == out and path.name == CHECKPOINT_NAME and path.is_file() and not our_card:
        return f"{name} (without a train-tiny card)"
    return name


def _is_temporary_of(name: str, targets) -> bool:
    """True for the temporary file write_atomically writes for one of `targets`: .<target>.<process id>.tmp."""
    return any(re.fullmatch(rf"\.{re.escape(target)}\.\d+\.tmp", name) for target in targets)


def _is_our_card(path: Path) -> bool:
    """True for a card that train-tiny wrote (`write_card`), not another tool's card.json."""
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return (isinstance(card, dict) and card.get("model") == "tiny"
            and str(card.get("command", "")).startswith(CARD_COMMAND))


def _missing_folders(paths: list[Path]) -> list[Path]:
    """The folders that creating `paths` would create, deepest first."""
    missing = set()
    for path in paths:
        path = path.absolute()
        while not path.exists():
            missing.add(path)
            path = path.parent
    return sorted(missing, key=lambda p: len(p.parts), reverse=True)


def _remove_empty(folders: list[Path]) -> None:
    """Remove those of `folders` (deepest first) that exist and are empty; keep everything else."""
    for folder in folders:
        try:
            folder.rmdir()  # refuses a folder that is not empty
        except OSError:
            pass
