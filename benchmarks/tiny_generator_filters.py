"""Which quality filters suit the small model's automatic mask generator? (An experiment, not a test:
EXPERIMENTS.md's "The generator's filters".)

The generator keeps a mask when its predicted IoU is above `pred_iou_thresh` and its stability score (at
`stability_score_offset`) reaches `stability_score_thresh`. For every pair of thresholds of a grid, it runs on
the model card's held-out scenes and scores what it keeps against the scenes' instances:

- found: the share of instances with a kept mask of IoU at least 0.5 / 0.75, and each instance's best IoU;
- masks: how many it keeps per scene, and the share of them that match some instance with IoU at least 0.5
  (the rest are pieces, unions of neighbours, the background or the clutter, which is not an instance).

    python benchmarks/tiny_generator_filters.py                        # 16 points per side, 100 scenes
    python benchmarks/tiny_generator_filters.py --points-per-side 32 --scenes 40
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings

import numpy as np
import torch

from sam_from_scratch import SamAutomaticMaskGenerator
from sam_from_scratch.build import sam_model_registry
from sam_from_scratch.config import TINY_CHECKPOINT
from sam_from_scratch.training.scenes import HELDOUT_SEED, SceneConfig, make_scene


def score_filters(model, num_scenes: int, points_per_side: int, pred: list[float], stability: list[float],
                  offset: float) -> dict:
    """For each (pred_iou_thresh, stability_score_thresh): counts summed over the scenes."""
    config = SceneConfig(image_size=model.image_encoder.img_size)
    totals = {pair: dict(masks=0, matching=0, instances=0, found50=0, found75=0, best=0.0)
              for pair in itertools.product(pred, stability)}
    for index in range(num_scenes):
        scene = make_scene(HELDOUT_SEED, index, config)
        truth = torch.from_numpy(scene.masks)  # (N, S, S) bool
        for (p, s), total in totals.items():
            generator = SamAutomaticMaskGenerator(model, points_per_side=points_per_side, pred_iou_thresh=p,
                                                  stability_score_thresh=s, stability_score_offset=offset)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no mask passed the filters" on a strict pair
                records = generator.generate(scene.image)
            total["masks"] += len(records)
            total["instances"] += len(truth)
            if not records:
                continue
            kept = torch.from_numpy(np.stack([r["segmentation"] for r in records]))  # (M, S, S) bool
            both = (kept[:, None] & truth[None]).flatten(2).sum(-1)  # (M, N)
            either = (kept[:, None] | truth[None]).flatten(2).sum(-1)
            iou = both / either
            best = iou.max(dim=0).values  # (N,): each instance's best kept mask
            total["found50"] += int((best >= 0.5).sum())
            total["found75"] += int((best >= 0.75).sum())
            total["best"] += float(best.sum())
            total["matching"] += int((iou.max(dim=1).values >= 0.5).sum())
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(TINY_CHECKPOINT), help="a tiny-model checkpoint (default: bundled)")
    parser.add_argument("--scenes", type=int, default=100, help="held-out scenes (default 100)")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--pred", default="0.3,0.4,0.5,0.6,0.7", help="pred_iou_thresh values, comma-separated")
    parser.add_argument("--stability", default="0.8,0.9,0.95", help="stability_score_thresh values")
    parser.add_argument("--offset", type=float, default=0.1, help="stability_score_offset (default 0.1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = sam_model_registry["tiny"](checkpoint=args.checkpoint).eval()
    started = time.perf_counter()
    totals = score_filters(model, args.scenes, args.points_per_side, [float(v) for v in args.pred.split(",")],
                           [float(v) for v in args.stability.split(",")], args.offset)
    instances = next(iter(totals.values()))["instances"]
    print(f"{args.scenes} held-out scenes ({instances / args.scenes:.1f} instances each), {args.points_per_side} "
          f"points per side, stability offset {args.offset} ({time.perf_counter() - started:.0f} s)")
    print("| pred_iou_thresh | stability_score_thresh | masks per scene | matching an instance | instances found "
          "(IoU >= 0.5) | found (IoU >= 0.75) | mean best IoU |")
    print("|---|---|---|---|---|---|---|")
    for (p, s), t in totals.items():
        print(f"| {p} | {s} | {t['masks'] / args.scenes:.1f} | {t['matching'] / max(t['masks'], 1):.2f} | "
              f"{t['found50'] / t['instances']:.3f} | {t['found75'] / t['instances']:.3f} | "
              f"{t['best'] / t['instances']:.3f} |")


if __name__ == "__main__":
    main()
