"""Masks, points and boxes drawn into pictures: one look for the widgets and the command line.

Everything here takes and returns plain (H, W, 3) uint8 arrays (numpy and Pillow only, no plotting library),
so the command line draws its overlay pictures with the same colours, tints and outlines the widgets show.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "BOX_COLOR", "NEGATIVE_COLOR", "OUTLINE_PX", "PALETTE", "POSITIVE_COLOR", "blend", "draw_prompts", "mask_outline",
    "object_colors", "outline_width",
]

# matplotlib's tab10 with its blue moved back (the first masks should stand out on skies, water and blue
# scenes), then tab20's light half: (20, 3) uint8 RGB.
PALETTE = np.array(
    [
        [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [227, 119, 194],
        [188, 189, 34], [23, 190, 207], [31, 119, 180], [140, 86, 75], [127, 127, 127],
        [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
        [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229],
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

# Prompts, as "#rrggbb" (both matplotlib and Pillow read it): green "this is the object", red "this is not".
POSITIVE_COLOR = "#2ecc40"
NEGATIVE_COLOR = "#ff4136"
BOX_COLOR = "#ffdc00"

OUTLINE_PX = 2  # mask outlines on screen, in screen pixels
EDGE_SHADE = 0.3  # the line inside a mask's outline: its colour darkened to this fraction


def object_colors(n: int) -> np.ndarray:
    """n distinct RGB colours, (n, 3) uint8, the same every time. Beyond 20 objects the colours repeat."""
    return PALETTE[np.arange(n) % len(PALETTE)]


def blend(
    image: np.ndarray, masks: Sequence[tuple[np.ndarray, np.ndarray]], outline: int = OUTLINE_PX, alpha: float = 0.45
) -> np.ndarray:
    """(H, W, 3) uint8: `image` with each (mask (H, W) bool, colour (3,)) tinted in, edged by an opaque band of
    its colour `outline` pixels wide and, just inside the band, a one-pixel line in a dark shade of it. The band
    shows against any background, the line on an object of the mask's own colour (an orange under an orange
    mask). `outline=0` tints only. Pixels outside every mask stay as they are; later masks are drawn on top."""
    out = np.array(image, dtype=np.float32)
    for mask, color in masks:
        color = np.asarray(color, np.float32)
        out[mask] = out[mask] * (1 - alpha) + color * alpha
        if outline > 0:
            inside = _eroded(mask, outline)  # the mask less its band
            out[inside & ~_eroded(inside, 1)] = color * EDGE_SHADE  # the line: the first pixels inside the band
            out[mask & ~inside] = color
    return out.round().astype(np.uint8)


def mask_outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels of `mask` (H, W) bool within `width` pixels of its border."""
    return mask & ~_eroded(mask, width)


def _eroded(mask: np.ndarray, width: int) -> np.ndarray:
    """`mask` (H, W) bool eroded by one pixel (4-neighbourhood), `width` times."""
    inner = mask.copy()
    for _ in range(width):
        shrunk = inner.copy()
        shrunk[1:] &= inner[:-1]
        shrunk[:-1] &= inner[1:]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    return inner


def outline_width(image_width: int, shown_width: int = 512) -> int:
    """The outline width, in image pixels, that looks like the widgets' when the image is shown `shown_width`
    pixels wide (never enlarged): a full-size picture keeps the proportions of the screen."""
    return max(1, round(OUTLINE_PX * image_width / min(image_width, shown_width)))


def draw_prompts(image: np.ndarray, points=(), labels=(), box=None) -> np.ndarray:
    """(H, W, 3) uint8: `image` with points (x, y) as dots, green where the label is 1 and red where it is 0,
    and `box` (x0, y0, x1, y1) as a yellow frame. Dots and frame grow with the image, to stay visible."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(picture)
    r = max(3, round(max(image.shape[:2]) / 150))
    for (x, y), label in zip(points, labels):
        color = POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline="white")
    if box is not None:
        draw.rectangle([float(v) for v in box], outline=BOX_COLOR, width=max(1, r // 2))
    return np.asarray(picture)
