"""Simulated users: the prompts SAM trains and is measured on.

A first prompt is a random point inside the object or its (jittered) box. After that, a user clicks where the
prediction is wrong: a missed pixel gives a positive click, a spurious pixel a negative one. Training draws
these clicks at random inside the error region (`sample_error_clicks`); evaluation puts them deterministically
at the centre of the largest error (`center_error_clicks`), so that figures do not depend on luck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import SamInputError, check_int, input_error


def as_masks(argument: str, masks) -> torch.Tensor:
    """(N, H, W) bool masks; 0/1 masks of another dtype are converted, anything else (logits, 0/255) refused."""
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        hint = "For one mask pass it as mask[None]." if isinstance(masks, torch.Tensor) and masks.ndim == 2 else ""
        raise input_error(argument, "a torch.Tensor of N masks, shape (N, H, W)", masks, hint)
    if masks.dtype == torch.bool:
        return masks
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise input_error(
            argument, "bool masks (or values 0 and 1)", masks, "Threshold them first: logits > 0, or values > 0.5."
        )
    return masks.bool()


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for any integer seed: torch takes 64 bits, Python's integers (a seed mixed with a step or
    an index) may be longer, so the seed is taken modulo 2**64 (seeds below that are unchanged)."""
    return torch.Generator().manual_seed(seed % 2**64)


def check_generator(generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise input_error("generator", "a torch.Generator, e.g. torch.Generator().manual_seed(0)", generator)


def random_points_in(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniformly random pixel inside each mask: (N, H, W) bool -> (N, 2) float (x, y) pixel indices."""
    masks = as_masks("masks", masks)
    check_generator(generator)
    weights = masks.flatten(1).float()
    weights[weights.sum(1) == 0] = 1.0  # an empty mask: any pixel
    flat = torch.multinomial(weights, 1, generator=generator)[:, 0]
    W = masks.shape[-1]
    return torch.stack([flat % W, flat // W], dim=1).float()


def jitter_boxes(boxes: torch.Tensor, image_size: int, generator: torch.Generator) -> torch.Tensor:
    """SAM trains on imprecise boxes: move each side by noise ~ 10% of the box side (at most 4% of the image).
    boxes (N, 4) float (x1, y1, x2, y2) -> (N, 4) inside [0, image_size - 1]."""
    if not (isinstance(boxes, torch.Tensor) and boxes.is_floating_point() and boxes.ndim == 2 and boxes.shape[1] == 4):
        raise input_error("boxes", "a float torch.Tensor of shape (N, 4), one (x1, y1, x2, y2) per row", boxes)
    check_int("image_size", image_size, 1)
    check_generator(generator)
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, dim=1) + 1
    noise = torch.randn(boxes.shape, generator=generator, device=boxes.device) * 0.1 * side
    noise = noise.clamp(-0.04 * image_size, 0.04 * image_size)
    return (boxes + noise).clamp(0, image_size - 1)


def erode(masks: torch.Tensor) -> torch.Tensor:
    """One 3x3 erosion of (N, H, W) bool masks; outside the image counts as background."""
    padded = F.pad(masks[:, None].float(), (1, 1, 1, 1), value=0.0)
    return (-F.max_pool2d(-padded, 3, stride=1))[:, 0] > 0.5


def distance_to_border(masks: torch.Tensor) -> torch.Tensor:
    """How many erosions each pixel survives (its chessboard distance to the region's border): (N, H, W) int."""
    distance = torch.zeros(masks.shape, dtype=torch.int32, device=masks.device)
    current = masks.clone()
    while current.any():
        distance += current.int()
        current = erode(current)
    return distance


def error_regions(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """False negatives (missed object pixels) and false positives (spurious pixels) of (N, H, W) bool masks."""
    return truth & ~pred, pred & ~truth


def as_mask_pair(pred, truth) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction and truth as (N, H, W) bool masks of one shape."""
    pred, truth = as_masks("pred", pred), as_masks("truth", truth)
    if pred.shape != truth.shape:
        raise SamInputError(f"pred: expected the shape of truth {tuple(truth.shape)}, got {tuple(pred.shape)}.")
    return pred, truth


def sample_error_clicks(
    pred: torch.Tensor, truth: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training clicks: a random pixel of the error region, away from its border where possible.

    Args:
        pred, truth: (N, H, W) bool.

    Returns:
        (N, 2) pixel indices (x, y) and (N,) labels: 1 where the pixel was missed, 0 where it is spurious.
        A perfect prediction gets a positive click inside the object.
    """
    pred, truth = as_mask_pair(pred, truth)
    check_generator(generator)
    fn, fp = error_regions(pred, truth)
    error = fn | fp
    inner = erode(error)
    has_inner = inner.flatten(1).any(1)[:, None, None]
    region = torch.where(has_inner, inner, error)
    perfect = ~region.flatten(1).any(1)[:, None, None]
    region = torch.where(perfect, truth, region)
    xy = random_points_in(region, generator)
    W = truth.shape[-1]
    flat = (xy[:, 1] * W + xy[:, 0]).long()
    labels = truth.flatten(1).gather(1, flat[:, None])[:, 0].float()
    return xy, labels


def center_error_clicks(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation clicks (deterministic): the error pixel farthest from the border of its error region.

    Same shapes as `sample_error_clicks`; a perfect prediction gets label -1 (SAM's "not a point").
    """
    pred, truth = as_mask_pair(pred, truth)
    fn, fp = error_regions(pred, truth)
    d_fn = distance_to_border(fn).flatten(1)
    d_fp = distance_to_border(fp).flatten(1)
    best_fn, at_fn = d_fn.max(1)
    best_fp, at_fp = d_fp.max(1)
    positive = best_fn >= best_fp
    flat = torch.where(positive, at_fn, at_fp)
    W = truth.shape[-1]
    xy = torch.stack([flat % W, flat // W], dim=1).float()
    labels = positive.float()
    labels[(best_fn == 0) & (best_fp == 0)] = -1.0
    return xy, labels


def low_res_to_input(xy: torch.Tensor, image_size: int, low_res: int) -> torch.Tensor:
    """Pixel indices at low resolution -> pixel coordinates in the model input (centre of the covered block):
    xy (N, 2) -> (N, 2)."""
    if not (isinstance(xy, torch.Tensor) and xy.ndim == 2 and xy.shape[1] == 2):
        raise input_error("xy", "a torch.Tensor of shape (N, 2), one (x, y) per row", xy)
    check_int("image_size", image_size, 1)
    check_int("low_res", low_res, 1)
    scale = image_size / low_res
    return xy * scale + (scale - 1) / 2
