"""Write a vit_b checkpoint of random weights, in Meta's format, into a cache folder (for `make test-real`).

    python tests/course/random_vit_b_checkpoint.py FOLDER

The file gets the official name (`sam_vit_b_01ec64.pth`), so with SAM_FROM_SCRATCH_CACHE=FOLDER the notebooks
find it the way they find a learner's download: `find_checkpoint("vit_b")` looks for that name in the cache
folder and does not hash it (only `download_checkpoint` checks Meta's SHA-256, when it fetches). The notebooks
then build and load vit_b instead of the bundled small model, so every line of them that depends on the
model's size runs at vit_b's size. The weights are random, so masks and scores mean nothing: `make test-real`
only checks that every cell runs.

The model comes from the official `segment_anything` package when it is installed (the keys are then Meta's by
construction), otherwise from ours (the same keys, which tests/weights checks). Seeded noise is added to every
float tensor so that no weight sits at its zero or one initialisation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sam_from_scratch.download import CHECKPOINTS


def random_vit_b(seed: int = 0, std: float = 0.02) -> dict[str, torch.Tensor]:
    """The state dict of a vit_b with random weights, official key names."""
    torch.manual_seed(seed)
    try:
        from segment_anything import sam_model_registry
    except ImportError:
        from sam_from_scratch import sam_model_registry
    state = sam_model_registry["vit_b"]().state_dict()
    generator = torch.Generator().manual_seed(seed)
    for tensor in state.values():
        if tensor.is_floating_point():
            tensor.add_(torch.randn(tensor.shape, generator=generator) * std)
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the cache folder (pass it on as SAM_FROM_SCRATCH_CACHE)")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        parser.error(f"folder: expected an existing folder, got {str(args.folder)!r}")
    path = args.folder / CHECKPOINTS["vit_b"].filename
    torch.save(random_vit_b(), path)
    print(f"wrote a random vit_b checkpoint ({path.stat().st_size / 2**20:.0f} MiB) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
