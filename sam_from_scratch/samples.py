"""A few small real photographs for the notebooks, tests and demos.

The files are package data in `sam_from_scratch/data/images/` (licenses in `sam_from_scratch/data/images/LICENSES.md`: all are
public domain or CC0). They come from scikit-image's bundled sample data; scikit-image is not a dependency.

    >>> from sam_from_scratch.samples import load_sample_image, list_sample_images
    >>> list_sample_images()
    ['astronaut', 'chelsea', 'coffee', 'rocket']
    >>> load_sample_image("coffee").shape      # (H, W, 3) uint8
    (400, 600, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .config import DATA_DIR, data_dir_note
from .errors import SamInputError

IMAGES_DIR = DATA_DIR / "images"
_SUFFIXES = (".png", ".jpg", ".jpeg")


def _files() -> dict[str, Path]:
    return {p.stem: p for p in sorted(IMAGES_DIR.glob("*")) if p.suffix.lower() in _SUFFIXES}


def list_sample_images() -> list[str]:
    """Names accepted by `load_sample_image`, sorted."""
    return sorted(_files())


def sample_image_path(name: str) -> Path:
    """Path of the sample photograph `name` (one of `list_sample_images()`)."""
    files = _files()
    if not isinstance(name, str) or name not in files:
        available = ", ".join(map(repr, sorted(files))) or f"none (is {IMAGES_DIR} missing?)"
        raise SamInputError(f"name: expected one of {available}, got {name!r}.{data_dir_note() if not files else ''}")
    return files[name]


def load_sample_image(name: str) -> np.ndarray:
    """Load a sample photograph as an RGB array of shape (H, W, 3), dtype uint8."""
    with Image.open(sample_image_path(name)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
