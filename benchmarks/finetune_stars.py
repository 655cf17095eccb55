"""Does fine-tuning teach the small model something new, without it forgetting what it knew? (An experiment.)

The bundled small model never saw a star (training/stars.py): a click on one spoke gets that spoke back. This
script fine-tunes it with `finetune` on 200 star scenes, then measures, one click per instance and the mask
the model rates best:

- the held-out star mIoU before and after (held-out star scenes, their own seed);
- the mIoU on the original kind of scenes before and after (the model card's held-out scenes, `evaluate`).

With --replay N, N scenes of the kind the model was trained on (its training generator, never the held-out
scenes) join the training images (`finetune(..., replay=...)`): fine-tuning on stars alone makes the model
forget part of what it knew. With --distill W (the default 20), on those replayed scenes the model is also held
to the answers of the model it started from (`finetune(..., distill=W)`).

    python benchmarks/finetune_stars.py                      # the recorded settings
    python benchmarks/finetune_stars.py --steps 200 --replay 0 --output runs/stars.jsonl   # stars alone

It prints one JSON line of figures (and appends it to --output), with the machine and its load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sam_from_scratch import from_pretrained  # noqa: E402
from sam_from_scratch.training.datasets import save_folder_dataset  # noqa: E402
from sam_from_scratch.training.evaluation import evaluate  # noqa: E402
from sam_from_scratch.training.finetune import finetune  # noqa: E402
from sam_from_scratch.training.scenes import TRAIN_SEED, make_scene  # noqa: E402
from sam_from_scratch.training.stars import HELDOUT_STAR_SEED, STAR_SEED, make_star_scene  # noqa: E402


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=200, help="star scenes to train on")
    parser.add_argument("--heldout", type=int, default=60, help="held-out star scenes")
    parser.add_argument("--original", type=int, default=300, help="held-out scenes of the original kind")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clicks", type=int, default=2)
    parser.add_argument("--prompts-per-image", type=int, default=4)
    parser.add_argument("--train-prompt-encoder", action="store_true")
    parser.add_argument("--replay", type=int, default=2000, help="original training scenes mixed in (0: none)")
    parser.add_argument("--replay-fraction", type=float, default=0.3,
                        help="their share of each step's images (a negative number: their share of all the images)")
    parser.add_argument("--distill", type=float, default=20.0,
                        help="weight of the starting model's answers on the replayed images (0: ground truth only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, help="append the JSON line to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="stars-") as folder:
        work = Path(folder)
        samples = [(f"train_{i:03d}", *(lambda s: (s.image, s.masks))(make_star_scene(STAR_SEED, i)))
                   for i in range(args.train)]
        samples += [(f"heldout_{i:03d}", *(lambda s: (s.image, s.masks))(make_star_scene(HELDOUT_STAR_SEED, i)))
                    for i in range(args.heldout)]
        save_folder_dataset(work / "stars", samples)
        replay = None
        if args.replay:
            originals = [(f"scene_{i:04d}", *(lambda s: (s.image, s.masks))(make_scene(TRAIN_SEED, i)))
                         for i in range(args.replay)]
            replay = save_folder_dataset(work / "replay", originals)
        original_before = evaluate(from_pretrained("tiny", device="cpu"), num_scenes=args.original, clicks=1)
        started = time.perf_counter()
        card = finetune("tiny", work / "stars", out=work / "run", steps=args.steps, batch=args.batch, lr=args.lr,
                        clicks=args.clicks, prompts_per_image=args.prompts_per_image,
                        train_prompt_encoder=args.train_prompt_encoder, replay=replay,
                        replay_fraction=args.replay_fraction if args.replay_fraction >= 0 else None,
                        distill=args.distill if args.replay else 0.0, device="cpu",
                        val_ids=[f"heldout_{i:03d}" for i in range(args.heldout)], progress=True)
        wall = time.perf_counter() - started
        tuned = from_pretrained(str(work / "run" / card["checkpoint"]), device="cpu")
        original_after = evaluate(tuned, num_scenes=args.original, clicks=1)

    before, after = original_before["single_click_miou"], original_after["single_click_miou"]
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
        "star_miou_before": card["heldout_miou_before"],
        "star_miou_after": card["heldout_miou_after"],
        "star_gain": round(card["heldout_miou_after"] - card["heldout_miou_before"], 4),
        "star_instances": card["heldout_instances"],
        "original_miou_before": before,
        "original_miou_after": after,
        "original_drop": round(before - after, 4),
        "original_best_of_3_before": original_before["single_click_best_of_3_miou"],
        "original_best_of_3_after": original_after["single_click_best_of_3_miou"],
        "original_instances": original_before["num_instances"],
        "training_seconds": card["training_seconds"],
        "seconds_per_step": card["seconds_per_step"],
        "finetune_call_seconds": round(wall, 1),
        "machine": f"{cpu_name()}, {os.cpu_count()} logical cores, torch threads {args.threads}",
        "load_average_at_start": [round(x, 2) for x in load],
        "torch": torch.__version__,
    }
    line = json.dumps(result)
    print(line)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "a") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
