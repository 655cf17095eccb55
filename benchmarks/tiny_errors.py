"""Where does the small model go wrong? (An experiment, not a test: EXPERIMENTS.md's "Where the error is".)

For every instance of the model card's held-out scenes, the model gets the instance's tight box (as the card's
box_miou does) and its mask is compared with the truth:

- spurious pixels (marked, not in the object) against missed ones (in the object, not marked);
- how far each spurious pixel lies from the object: touching it (1 px, the rim), 1 to 3 px, or 3 px and more
  (a leak into a neighbour or the background);
- the box IoU of each kind of object (training/scenes.py: ellipse, rectangle, polygon, ring, thin bar, nested
  pairs and their parts).

    python benchmarks/tiny_errors.py                         # the bundled model, 100 held-out scenes
    python benchmarks/tiny_errors.py --checkpoint runs/train-tiny/sam_tiny.pt --scenes 300
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from scipy import ndimage

from sam_from_scratch.build import sam_model_registry
from sam_from_scratch.config import TINY_CHECKPOINT
from sam_from_scratch.training.forward import decode, encode_images
from sam_from_scratch.training.scenes import HELDOUT_SEED, SceneConfig, make_scene
from sam_from_scratch.utils.amg import batched_mask_to_box


def box_errors(model, num_scenes: int) -> dict:
    """Pixel counts of the errors from box prompts, and the box IoU of every instance by kind."""
    size = model.image_encoder.img_size
    config = SceneConfig(image_size=size)
    counts = dict(spurious=0, missed=0, touching=0, near=0, far=0)
    ious = defaultdict(list)
    with torch.no_grad():
        for index in range(num_scenes):
            scene = make_scene(HELDOUT_SEED, index, config)
            truth = torch.from_numpy(scene.masks)  # (N, S, S) bool
            n = len(truth)
            embeddings = encode_images(model, torch.from_numpy(scene.image)[None])
            boxes = batched_mask_to_box(truth).float()  # (N, 4) tight, as the card's box_miou
            logits = decode(model, embeddings, torch.zeros(n, dtype=torch.long), None, None, boxes, None, False)[0]
            masks = (model.postprocess_masks(logits, (size, size), (size, size)) > model.mask_threshold)[:, 0]
            for mask, target, kind in zip(masks.numpy(), scene.masks, scene.kinds):
                spurious, missed = mask & ~target, target & ~mask
                distance = ndimage.distance_transform_edt(~target)[spurious]  # to the nearest object pixel
                counts["spurious"] += int(spurious.sum())
                counts["missed"] += int(missed.sum())
                counts["touching"] += int((distance <= 1).sum())
                counts["near"] += int(((distance > 1) & (distance < 3)).sum())
                counts["far"] += int((distance >= 3).sum())
                ious[kind].append((mask & target).sum() / (mask | target).sum())
    return dict(counts=counts, ious=ious)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(TINY_CHECKPOINT), help="a tiny-model checkpoint (default: bundled)")
    parser.add_argument("--scenes", type=int, default=100, help="held-out scenes (default 100)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = sam_model_registry["tiny"](checkpoint=args.checkpoint).eval()
    found = box_errors(model, args.scenes)
    c = found["counts"]
    print(f"{args.scenes} held-out scenes, box prompts: {c['spurious']:,} spurious pixels, {c['missed']:,} missed")
    print(f"spurious pixels touching the object {c['touching'] / c['spurious']:.0%}, 1 to 3 px away "
          f"{c['near'] / c['spurious']:.0%}, 3 px or more {c['far'] / c['spurious']:.0%}")
    for kind, values in sorted(found["ious"].items(), key=lambda item: np.mean(item[1])):
        print(f"  {kind:10s} box IoU {np.mean(values):.2f} ({len(values)} instances)")


if __name__ == "__main__":
    main()
