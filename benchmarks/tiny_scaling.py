"""How far does the tiny model's recipe go with more compute? (An experiment for a GPU, not a test.)

The bundled tiny model must train in 30 minutes on 2 CPU cores, and there it falls short of the quality
targets of tests/training/test_tiny_model.py (see sam_from_scratch/data/tiny/EXPERIMENTS.md). This script asks whether
the recipe or the budget is the limit: it trains a few variants of the same recipe (training.batch_loss, the
same seeds and held-out scenes) with the model on a GPU, the scenes made ahead by data-loader processes, and
reports the card's figures of each.

    python benchmarks/tiny_scaling.py --variants shipped,x8:120,patch2-x8:120 --budget 100 --output results.json

Each variant gets at most `--budget` seconds of training: after the warm-up the pace is measured and, if
the variant's steps would not fit, its cosine schedule is shortened to the steps that do (reported).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace

import torch

from sam_from_scratch.build import build_sam

from sam_from_scratch.config import CONFIGS
from sam_from_scratch.training import (
    SceneConfig, TrainConfig, batch_loss, evaluate, lr_factor, make_optimizer, prompt_generator, training_batch,
)

TINY = CONFIGS["tiny"]
SHIPPED = TrainConfig()
# The names count scenes against a recipe of 2,000 steps x 16 scenes (x8: eight times its scenes). Every variant
# starts from TrainConfig(); sam_from_scratch/data/tiny/EXPERIMENTS.md says which recipe each run had.
VARIANTS = {
    # The CPU recipe unchanged: calibrates the GPU run against the card.
    "shipped": (TINY, SHIPPED),
    # 4,000 steps x 64 scenes.
    "x8": (TINY, replace(SHIPPED, steps=4000, images_per_step=64)),
    # The same with 2 px patches: a 24 x 24 grid, windows covering the same image area.
    "patch2-x8": (replace(TINY, patch_size=2, window_size=12), replace(SHIPPED, steps=4000, images_per_step=64)),
    # The shipped steps with 256 scenes each.
    "x16": (TINY, replace(SHIPPED, images_per_step=256)),
}


class Batches(torch.utils.data.Dataset):
    """training_batch(step) for a data loader: item `step` is the whole batch of that step."""

    def __init__(self, cfg: TrainConfig, scene_config: SceneConfig):
        self.cfg, self.scene_config = cfg, scene_config

    def __len__(self) -> int:
        return self.cfg.steps

    def __getitem__(self, step: int):
        return training_batch(step, self.cfg, self.scene_config)


def run_variant(
    name: str, budget: float, loaders: int, eval_scenes: int, device: torch.device, prompts_on_device: bool, **recipe
) -> dict:
    model_config, cfg = VARIANTS[name]
    cfg = replace(cfg, **{key: value for key, value in recipe.items() if value is not None})
    scene_config = SceneConfig(image_size=model_config.image_size)
    torch.manual_seed(cfg.seed)
    model = build_sam(model_config).to(device).train()
    optimizer = make_optimizer(model, cfg)
    schedule = {"cfg": cfg}  # shortened once the pace is known
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, schedule["cfg"]))
    batches = torch.utils.data.DataLoader(
        Batches(cfg, scene_config), batch_size=None, num_workers=loaders, prefetch_factor=8, persistent_workers=False
    )
    # Prompts drawn on the CPU (the default) repeat the CPU run's clicks; on the GPU they are other clicks, faster.
    device_generator = torch.Generator(device=device).manual_seed(cfg.seed) if prompts_on_device else None
    started, pace_from, log, trained = time.perf_counter(), None, [], 0
    for step, batch in enumerate(batches):
        if step == schedule["cfg"].steps or time.perf_counter() - started > 1.25 * budget:
            break  # done, or the pace fell behind the one measured: stop at the step reached (reported)
        parts = batch_loss(model, batch, cfg, device_generator if prompts_on_device else prompt_generator(cfg, step))
        optimizer.zero_grad(set_to_none=True)
        parts["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        trained = step + 1
        if step == 10:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            pace_from = time.perf_counter()
        if step == cfg.warmup_steps - 1 and pace_from is not None:  # fit the rest of the schedule to the budget
            per_step = (time.perf_counter() - pace_from) / (step - 10)
            fits = step + 1 + int((budget - (time.perf_counter() - started)) / per_step)
            if fits < cfg.steps:
                schedule["cfg"] = replace(cfg, steps=fits)
        if step % 100 == 0:
            log.append({"step": step, "loss": parts["loss"].item(), "first_iou": parts["first_iou"]})
            print(f"  {name} step {step}/{schedule['cfg'].steps} loss {log[-1]['loss']:.3f} "
                  f"first-click IoU {log[-1]['first_iou']:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)
    seconds, steps = time.perf_counter() - started, trained
    t0 = time.perf_counter()
    figures = evaluate(model.eval(), num_scenes=eval_scenes, scene_config=scene_config)
    return {
        "variant": name, "prompts_on_device": prompts_on_device, "steps": steps, "scheduled_steps": schedule["cfg"].steps, "images_per_step": cfg.images_per_step,
        "scenes_seen": steps * cfg.images_per_step, "times_shipped_scenes": steps * cfg.images_per_step / (SHIPPED.steps * SHIPPED.images_per_step),
        "train_seconds": round(seconds, 1), "eval_seconds": round(time.perf_counter() - t0, 1),
        "params": sum(p.numel() for p in model.parameters()), "model_config": asdict(model_config),
        "figures": figures, "log": log, "state_dict": model.state_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="shipped,x8,patch2-x8", help=f"comma-separated, from {', '.join(VARIANTS)}; NAME:SECONDS sets that variant's budget")
    parser.add_argument("--budget", type=float, default=150.0, help="training seconds per variant at most")
    parser.add_argument("--loaders", type=int, default=12, help="data-loader processes making scenes")
    parser.add_argument("--eval-scenes", type=int, default=300)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prompts-on-device", action="store_true", help="draw the random prompts on --device")
    parser.add_argument("--steps", type=int, default=None, help="override the variants' steps")
    parser.add_argument("--images-per-step", type=int, default=None, help="override the variants' batch")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the training process")
    parser.add_argument("--output", default=None, help="a JSON file for the results (checkpoints beside it)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}", flush=True)
    results = []
    for item in args.variants.split(","):
        variant, _, budget = item.partition(":")
        result = run_variant(variant, float(budget or args.budget), args.loaders, args.eval_scenes, device,
                             args.prompts_on_device, steps=args.steps, images_per_step=args.images_per_step)
        state = result.pop("state_dict")
        results.append({"device": name, **result})
        if args.output:
            torch.save({k: v.cpu() for k, v in state.items()}, f"{args.output.removesuffix('.json')}-{variant}.pt")
            with open(args.output, "w") as f:
                json.dump(results, f, indent=1)
        f = result["figures"]
        print(f"{variant}: {result['steps']} steps x {result['images_per_step']} ({result['times_shipped_scenes']:.1f}x the "
              f"shipped scenes) in {result['train_seconds']:.0f} s: one click {f['single_click_miou']:.3f}, best of 3 "
              f"{f['single_click_best_of_3_miou']:.3f}, three clicks {f['three_clicks_miou']:.3f}, box {f['box_miou']:.3f}, "
              f"IoU corr. {f['iou_prediction_correlation']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
