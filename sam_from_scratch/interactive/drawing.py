"""Masks, points and boxes drawn into pictures: one look for the widgets and the command line.

Everything here takes and returns plain (H, W, 3) uint8 arrays (numpy and Pillow only, no plotting library),
so the command line draws its overlay pictures with the same colours, tints and outlines the widgets show.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import input_error

__all__ = [
    "BOX_COLOR", "NEGATIVE_COLOR", "OUTLINE_PX", "PALETTE", "POSITIVE_COLOR", "as_bool_masks", "blend", "draw_prompts",
    "mask_outline", "object_colors", "outline_width",
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
    """(H, W, 3) uint8: `image` with each (mask (H, W) bool or 0/1 integers, colour (3,) RGB) tinted in, edged by
    an opaque band of its colour `outline` pixels wide and, just inside the band, a one-pixel line in a dark shade
    of it. The band shows against any background, the line on an object of the mask's own colour (an orange under
    an orange mask). `outline=0` tints only. Pixels outside every mask stay as they are; later masks are drawn on
    top. A mask of another kind or size is a SamInputError naming it (`masks[2][0]`), see `as_bool_masks`."""
    out = np.array(image, dtype=np.float32)
    if out.ndim != 3 or out.shape[2] != 3:
        raise input_error("image", "an (H, W, 3) RGB image", image)
    for index, (mask, color) in enumerate(_mask_color_pairs(masks)):
        mask = as_bool_masks(f"masks[{index}][0]", mask, out.shape[:2])
        color = _rgb(f"masks[{index}][1]", color)
        out[mask] = out[mask] * (1 - alpha) + color * alpha
        if outline > 0:
            inside = _eroded(mask, outline)  # the mask less its band
            out[inside & ~_eroded(inside, 1)] = color * EDGE_SHADE  # the line: the first pixels inside the band
            out[mask & ~inside] = color
    return out.round().astype(np.uint8)


def as_bool_masks(argument: str, masks, size: Optional[tuple[int, int]] = None, stacked: bool = False) -> np.ndarray:
    """`masks` as a bool array: an (H, W) mask, or (C, H, W) masks with `stacked`; (H, W) must be `size` when given.

    Bools pass as they are. Integers that are all 0 or 1 (a mask saved as 0/1 uint8) become `masks != 0`: as they
    are, numpy would read them as row numbers, not as a mask. Anything else is a SamInputError naming `argument`:
    floats (probabilities, logits) and other integers (0/255, a label map) have no one right threshold.
    """
    shape = "(C, H, W)" if stacked else "(H, W)"
    if size is not None:
        shape += f" = ({'C, ' if stacked else ''}{size[0]}, {size[1]})"
    what = (f"{shape} masks" if stacked else f"an {shape} mask") + " of bools or of 0/1 integers"
    try:
        array = np.asarray(masks)
    except (TypeError, ValueError, RuntimeError):  # ragged lists, a tensor on the GPU
        raise input_error(argument, what, masks) from None
    if array.ndim != (3 if stacked else 2) or (stacked and len(array) == 0):
        raise input_error(argument, what + (", C >= 1" if stacked else ""), masks)
    if size is not None and array.shape[-2:] != tuple(size):
        transposed = array.shape[-2:] == tuple(size)[::-1]
        raise input_error(argument, f"{shape} (the image's size)", masks,
                          "Transposed (H and W swapped)?" if transposed else "")
    if array.dtype == bool:
        return array
    if array.dtype.kind == "f":
        raise input_error(argument, what, masks,
                          "Probabilities or logits? Threshold them, e.g. mask > 0.5 (logits: > 0).")
    if array.dtype.kind not in "iu":
        raise input_error(argument, what, masks)
    other = array[(array != 0) & (array != 1)]
    if other.size:
        raise input_error(argument, what, masks, f"It holds {other.flat[0]}: a 0/255 mask? Pass mask > 0. "
                                                 "A label map? Pass labels == k for object k.")
    return array != 0


def _mask_color_pairs(masks) -> list:
    """`masks` as a list of (mask, colour) pairs; anything else is a SamInputError naming `masks` or the item."""
    if isinstance(masks, np.ndarray) or not hasattr(masks, "__iter__"):
        raise input_error("masks", "a list of (mask, colour) pairs", masks, "For one mask: [(mask, color)].")
    pairs = list(masks)
    for index, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise input_error(f"masks[{index}]", "a pair (mask (H, W) bool, colour (3,) RGB)", pair)
    return pairs


def _rgb(argument: str, color) -> np.ndarray:
    """`color` as (3,) float32 RGB in 0..255."""
    try:
        rgb = np.asarray(color, np.float32)
    except (TypeError, ValueError):
        rgb = None
    if rgb is None or rgb.shape != (3,) or not ((0 <= rgb) & (rgb <= 255)).all():  # NaN fails too
        raise input_error(argument, "an RGB colour, 3 numbers 0..255", color)
    return rgb


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
