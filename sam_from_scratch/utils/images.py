"""Image files and Pillow images of any mode as (H, W, 3) uint8 RGB arrays, read by their meaning."""

from __future__ import annotations

import numpy as np


def as_rgb(picture) -> np.ndarray:
    """(H, W, 3) uint8 from a Pillow image of any mode.

    16-bit, 32-bit integer and float greyscale are scaled to 0..255 (Pillow's own conversion clips them, so a
    16-bit PNG would read as white); palettes and CMYK become RGB, and transparency is dropped.
    """
    mode = picture.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(picture, dtype=np.float64)
        if mode == "F" and values.size and np.nanmin(values) >= 0 and np.nanmax(values) <= 1:
            full_scale = 1.0  # a float image in [0, 1]
        elif mode == "F":
            values = values - np.nanmin(values) if values.size else values
            full_scale = max(float(np.nanmax(values)) if values.size else 1.0, 1e-12)  # stretched to its range
        else:
            full_scale = 65535.0 if mode != "I" or values.max(initial=0) > 255 else 255.0  # 16-bit, or 8-bit in I
        grey = np.clip(np.nan_to_num(values) / full_scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(picture.convert("RGB"))


def read_image(path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, what SamPredictor.set_image takes: turned upright as its EXIF data
    says (as viewers show it, while Pillow alone returns a phone's photo on its side) and read by its meaning
    (as_rgb: a 16-bit PNG is not white). The command line reads its IMAGE with this.

    Raises SamInputError naming `path` for something that is not a path, a missing file, a folder, or a file
    Pillow cannot read (the reason is the error's __cause__); Pillow's DecompressionBombError passes as it is.
    """
    import os

    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..errors import SamInputError, input_error

    if not isinstance(path, (str, os.PathLike)):
        raise input_error("path", "the path of an image file (a str or a path)", path)
    try:
        with Image.open(path) as picture:
            return as_rgb(ImageOps.exif_transpose(picture))
    except (UnidentifiedImageError, OSError) as error:
        what = (
            "which does not exist" if isinstance(error, FileNotFoundError)
            else "which is a folder" if isinstance(error, IsADirectoryError)
            else f"which Pillow cannot read as an image ({error})"
        )
        raise SamInputError(f"path: expected an image file, got {path}, {what}.") from error
