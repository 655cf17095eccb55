"""Helpers for the automatic mask generator: point grids, crops, boxes, scores, RLE, clean-up.

Every function here works on plain tensors or arrays, so each can be tried on its own in a notebook.

Conventions: boxes are XYXY (x1, y1, x2, y2) unless a name says XYWH; box corners of a mask are the
first and last row/column it covers (inclusive), as in the official code; masks are boolean HxW (or
BxHxW); RLE is COCO's uncompressed run-length encoding, counted down the columns (Fortran order) and
starting with a run of zeros: ``{"size": [H, W], "counts": [zeros, ones, zeros, ...]}``.

Box non-maximum suppression is torchvision's ``batched_nms``; notebook 10 writes it out by hand.
"""

from __future__ import annotations

import copy
import math
from itertools import product
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import torch
from torchvision.ops import batched_nms, box_area, nms  # noqa: F401  (the generator's NMS, and notebook 10's)

from ..errors import SamInputError, check_choice, check_int, check_number, input_error, is_int, renamed

# ---- point grids and crops -----------------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n_per_side**2, 2) points (x, y) in [0, 1], the centres of an n x n grid of cells, row by row."""
    check_int("n_per_side", n_per_side, 1)
    offset = 1 / (2 * n_per_side)
    ticks = np.linspace(offset, 1 - offset, n_per_side)
    ys, xs = np.meshgrid(ticks, ticks, indexing="ij")  # (n, n) each; x changes fastest along a row
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> List[np.ndarray]:
    """One grid per crop layer: layer i has int(n_per_side / scale_per_layer**i) points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: Tuple[int, ...], n_layers: int, overlap_ratio: float
) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes (XYXY, ints) for every crop layer, and the layer each box belongs to.

    Layer 0 is the whole image. Layer i >= 1 tiles the image with (2**i) x (2**i) crops that overlap by
    ``overlap_ratio`` * short side * 2 / 2**i pixels. Boxes are listed column of crops by column.
    """
    size = tuple(im_size) if isinstance(im_size, (tuple, list, np.ndarray)) else None
    if size is None or len(size) != 2 or not all(is_int(n) and n >= 0 for n in size):
        raise input_error("im_size", "(H, W), two integers >= 0", im_size, "For an image array: image.shape[:2].")
    check_int("n_layers", n_layers, 0)
    # a ratio of 1 would make every tile as wide as the image and step by 0 pixels
    check_number("overlap_ratio", overlap_ratio, 0.0, 1.0, high_open=True)
    im_h, im_w = size
    short_side = min(im_h, im_w)
    crop_boxes, layer_idxs = [[0, 0, im_w, im_h]], [0]

    for layer in range(1, n_layers + 1):
        n_per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n_per_side))
        # n crops of length L overlapping by `overlap` cover n * L - (n - 1) * overlap pixels
        crop_w = int(math.ceil((overlap * (n_per_side - 1) + im_w) / n_per_side))
        crop_h = int(math.ceil((overlap * (n_per_side - 1) + im_h) / n_per_side))
        x0s = [int((crop_w - overlap) * i) for i in range(n_per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_per_side)]
        for x0, y0 in product(x0s, y0s):
            crop_boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layer_idxs.append(layer)
    return crop_boxes, layer_idxs


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: List[int]) -> torch.Tensor:
    """Shift (..., 4) XYXY boxes from a crop's frame to the full image's frame."""
    x0, y0 = crop_box[0], crop_box[1]
    return boxes + torch.tensor([x0, y0, x0, y0], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: List[int]) -> torch.Tensor:
    """Shift (..., 2) points (x, y) from a crop's frame to the full image's frame."""
    return points + torch.tensor([crop_box[0], crop_box[1]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop_box: List[int], orig_h: int, orig_w: int) -> torch.Tensor:
    """Pad BxhxW masks of a crop with zeros to Bx orig_h x orig_w, the crop sitting where it was cut."""
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    pad = (x0, orig_w - x1, y0, orig_h - y1)  # (left, right, top, bottom)
    return torch.nn.functional.pad(masks, pad, value=0)


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: List[int], orig_box: List[int], atol: float = 20.0
) -> torch.Tensor:
    """(B,) True for boxes (in the crop's frame) within ``atol`` pixels of a crop edge that is not also an
    edge of the image: such masks were probably cut off by the crop."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    image = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop_edge = torch.isclose(boxes, crop[None, :], atol=atol, rtol=0)  # (B, 4)
    near_image_edge = torch.isclose(boxes, image[None, :], atol=atol, rtol=0)
    return (near_crop_edge & ~near_image_edge).any(dim=1)


# ---- boxes and scores -----------------------------------------------------------------------------------


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) boolean masks -> (..., 4) int64 XYXY boxes, inclusive of the last row/column.

    An empty mask gets the box [0, 0, 0, 0]. No pixels at all (no masks, or masks of size 0) give float32
    zeros, as the official helper does: the generator's records inherit this type (see its ``generate``).
    """
    _check_masks("masks", masks, "boolean masks (..., H, W)", boolean=True)
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, device=masks.device)
    h, w = masks.shape[-2:]
    rows = masks.any(dim=-1)  # (..., H): does the mask touch this row?
    cols = masks.any(dim=-2)  # (..., W)
    # argmax returns the first maximum: the first covered row from the top, and from the bottom
    top = rows.to(torch.uint8).argmax(dim=-1)
    bottom = h - 1 - rows.flip(-1).to(torch.uint8).argmax(dim=-1)
    left = cols.to(torch.uint8).argmax(dim=-1)
    right = w - 1 - cols.flip(-1).to(torch.uint8).argmax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)  # (..., 4)
    return boxes * rows.any(dim=-1, keepdim=True)  # empty masks -> zeros


def box_xyxy_to_xywh(box_xyxy: Any) -> Any:
    """[x1, y1, x2, y2] -> [x, y, width, height] for one box; returns a copy of the same kind (tensor, array or
    list)."""
    if not hasattr(box_xyxy, "__len__") or len(box_xyxy) != 4:
        raise input_error("box_xyxy", "one box [x1, y1, x2, y2]", box_xyxy)
    x1, y1, x2, y2 = box_xyxy
    box = box_xyxy.clone() if isinstance(box_xyxy, torch.Tensor) else copy.copy(box_xyxy)
    if isinstance(box, tuple):  # a tuple cannot be changed in place: a list
        box = list(box)
    box[2], box[3] = x2 - x1, y2 - y1
    return box


def calculate_stability_score(
    masks: torch.Tensor, mask_threshold: float, threshold_offset: float
) -> torch.Tensor:
    """IoU between the mask cut at ``threshold + offset`` and the mask cut at ``threshold - offset``.

    ``masks`` are (..., H, W) logits; returns (...) scores in [0, 1]. The high-cut mask lies inside the
    low-cut one, so the IoU is simply the ratio of their areas. A mask that barely changes when the
    cut-off moves is "stable"; a blurry one is not. (An all-background mask gives nan.)
    """
    _check_masks("masks", masks, "mask logits (..., H, W)", boolean=False)
    area_high = (masks > mask_threshold + threshold_offset).sum(dim=(-2, -1))
    area_low = (masks > mask_threshold - threshold_offset).sum(dim=(-2, -1))
    return area_high / area_low


# ---- run-length encoding --------------------------------------------------------------------------------


def mask_to_rle_pytorch(tensor: torch.Tensor) -> List[Dict[str, Any]]:
    """``tensor``: BxHxW boolean masks -> B uncompressed RLEs (COCO layout, see the module docstring)."""
    _check_masks("tensor", tensor, "boolean masks (B, H, W)", ndim=3, boolean=True)
    b, h, w = tensor.shape
    if b == 0:
        return []
    flat = tensor.transpose(1, 2).reshape(b, h * w)  # (B, H*W), column by column
    mask_idx, change_at = (flat[:, 1:] != flat[:, :-1]).nonzero(as_tuple=True)
    changes_per_mask = torch.bincount(mask_idx, minlength=b).tolist()
    starts_of_runs = (change_at + 1).split(changes_per_mask)  # where each new run begins, per mask
    first_pixels = flat[:, 0].tolist()
    rles = []
    for starts, first_pixel in zip(starts_of_runs, first_pixels):
        counts = np.diff([0, *starts.tolist(), h * w]).tolist()
        if first_pixel:
            counts = [0, *counts]  # counts always begin with a run of zeros
        rles.append({"size": [h, w], "counts": counts})
    return rles


def rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> HxW boolean mask."""
    _check_rle(rle)
    return _rle_to_mask(rle)


def _rle_to_mask(rle: Dict[str, Any]) -> np.ndarray:
    """`rle_to_mask` without the check, for RLEs that `mask_to_rle_pytorch` made."""
    h, w = rle["size"]
    counts = rle["counts"]
    values = np.arange(len(counts)) % 2 == 1  # runs alternate zeros, ones, zeros, ...
    column_major = np.repeat(values, counts)  # (H*W,)
    return column_major.reshape(w, h).T


def area_from_rle(rle: Dict[str, Any]) -> int:
    """Number of pixels set in an uncompressed RLE: the sum of its runs of ones."""
    _check_rle(rle)
    return _area_from_rle(rle)


def _area_from_rle(rle: Dict[str, Any]) -> int:
    """`area_from_rle` without the check, for RLEs that `mask_to_rle_pytorch` made."""
    return sum(rle["counts"][1::2])


def _check_masks(argument: str, masks, expected: str, ndim: int | None = None, boolean: bool = True) -> None:
    """Masks for the torch helpers: a tensor of at least 2 dimensions (exactly `ndim` if given), of bools (or,
    with boolean=False, of real-valued logits): logits where masks belong give whole-image boxes and RLEs of
    nothing, masks where logits belong stability scores of 0, all without a word."""
    is_tensor = isinstance(masks, torch.Tensor)
    if not is_tensor or (masks.ndim < 2 if ndim is None else masks.ndim != ndim):
        hint = "Pass torch.from_numpy(masks)." if isinstance(masks, np.ndarray) else ""
        if is_tensor and masks.ndim == 2 and ndim == 3:
            hint = "One mask? Pass tensor[None]."
        raise input_error(argument, f"a tensor of {expected}", masks, hint)
    if boolean and masks.dtype != torch.bool:
        raise input_error(argument, f"a tensor of {expected}", masks, "Threshold logits first: masks > 0.")
    if not boolean and (masks.dtype == torch.bool or masks.is_complex()):
        raise input_error(argument, f"a tensor of {expected}", masks, "Pass the logits, not masks thresholded from them.")


def _check_rle(rle) -> None:
    """An uncompressed RLE: {"size": [H, W], "counts": [runs...]} whose runs cover the H x W pixels."""
    counts = rle.get("counts") if isinstance(rle, dict) else None
    if isinstance(counts, (str, bytes)):
        raise input_error("rle", "an uncompressed RLE ({'size': [H, W], 'counts': [run lengths]})", rle,
                          "This is COCO's compressed form (output_mode='coco_rle'): decode it with "
                          "pycocotools.mask.decode, or ask the generator for output_mode='uncompressed_rle'.")
    covered = False
    if isinstance(rle, dict):  # an array indexed by "size" would raise an IndexError
        try:
            h, w = (int(s) for s in rle["size"])
            runs = np.asarray(counts)
            covered = (runs.ndim == 1 and runs.dtype.kind in "iu" and len(runs) > 0 and runs.min() >= 0
                       and min(h, w) >= 0 and int(runs.sum()) == h * w)
        except (TypeError, ValueError, KeyError):
            pass
    if not covered:
        raise input_error("rle", "an uncompressed RLE ({'size': [H, W], 'counts': [run lengths]}) whose runs, "
                          "whole numbers >= 0, cover H x W pixels", rle)


def coco_encode_rle(uncompressed_rle: Dict[str, Any]) -> Dict[str, Any]:
    """Compress an RLE to COCO's string form with pycocotools (``pip install sam-from-scratch[coco]``)."""
    try:
        _check_rle(uncompressed_rle)
    except SamInputError as error:
        if isinstance(uncompressed_rle, (np.ndarray, torch.Tensor)):
            raise input_error("uncompressed_rle", "an uncompressed RLE ({'size': [H, W], 'counts': [run lengths]})",
                              uncompressed_rle, "For a mask, encode it first: "
                              "mask_to_rle_pytorch(torch.as_tensor(mask)[None])[0].") from None
        raise renamed(error, {"rle": "uncompressed_rle"}) from None
    try:
        from pycocotools import mask as coco_mask
    except ImportError as error:
        raise ImportError(
            "output_mode='coco_rle' needs pycocotools: pip install pycocotools "
            "(or use output_mode='uncompressed_rle', which needs nothing extra)"
        ) from error
    h, w = uncompressed_rle["size"]
    rle = coco_mask.frPyObjects(uncompressed_rle, h, w)
    rle["counts"] = rle["counts"].decode("utf-8")  # bytes -> str, so the record can be saved as JSON
    return rle


# ---- small-region clean-up -----------------------------------------------------------------------------


def label_connected_components(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Label the 8-connected regions of an HxW boolean mask.

    Returns ``labels`` (HxW int32: 0 outside the mask, 1..K inside, numbered in the order a row-by-row
    scan first meets each region, as OpenCV numbers them) and ``areas`` ((K,) int64 pixel counts).
    Integer masks of 0s and 1s are read as booleans.
    """
    mask = _as_bool_mask("mask", mask)
    from scipy import ndimage  # only the optional clean-up (min_mask_region_area > 0) needs SciPy

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))  # 3x3: diagonals connect
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
    return labels.astype(np.int32, copy=False), areas


def remove_small_regions(mask: np.ndarray, area_thresh: float, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill small holes (``mode="holes"``) or drop small islands (``mode="islands"``) of an HxW mask.

    A hole is an 8-connected background region smaller than ``area_thresh`` pixels (a small background
    region at the image border counts too); an island is such a foreground region. If every island is
    small, the largest one stays. Returns the new mask (bool) and whether anything changed. ``mask`` may be
    boolean or hold integers 0 and 1; it is never changed in place.
    """
    mask = _as_bool_mask("mask", mask)
    check_number("area_thresh", area_thresh, 0.0)
    check_choice("mode", mode, ("holes", "islands"))
    fill_holes = mode == "holes"
    labels, areas = label_connected_components(~mask if fill_holes else mask)
    small = np.flatnonzero(areas < area_thresh) + 1  # labels of small regions
    if len(small) == 0:
        return mask, False
    if fill_holes:
        return mask | np.isin(labels, small), True
    large = np.flatnonzero(areas >= area_thresh) + 1
    if len(large) == 0:
        large = [int(np.argmax(areas)) + 1]
    return np.isin(labels, large), True


def _as_bool_mask(argument: str, mask) -> np.ndarray:
    """An HxW numpy mask as bools: bools as they are, integers 0 and 1 converted; anything else is refused (``~``
    on 0/1 integers gives 255/254, which would fill nothing or everything without a word)."""
    expected = "an (H, W) numpy array of bools (or of integers 0 and 1)"
    if not isinstance(mask, np.ndarray):
        hint = "Pass mask.cpu().numpy()." if isinstance(mask, torch.Tensor) else "Wrap it: np.array(...)."
        raise input_error(argument, expected, mask, hint)
    if mask.ndim != 2:
        hint = "One mask? Pass mask[0]." if mask.ndim == 3 and len(mask) == 1 else "Pass one (H, W) mask at a time."
        raise input_error(argument, expected, mask, hint)
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind in "iu":
        if ((mask == 0) | (mask == 1)).all():
            return mask.astype(bool)
        low, high = mask.min(), mask.max()
        raise input_error(argument, expected, mask,
                          f"Its values run from {low} to {high}: for a mask stored as 0 and 255, pass mask > 0.")
    if mask.dtype.kind == "f":
        raise input_error(argument, expected, mask, "Threshold it first: mask > 0 for logits, mask > 0.5 for "
                          "probabilities.")
    raise input_error(argument, expected, mask)


# ---- batches ---------------------------------------------------------------------------------------------


def batch_iterator(batch_size: int, *args) -> Iterator[List[Any]]:
    """Walk equal-length sequences side by side, ``batch_size`` items at a time.

    Each step yields ``[arg[i : i + batch_size] for arg in args]``; the last batch is shorter when the length
    is not a multiple of ``batch_size``. The arguments are checked here, before the first batch is asked for.
    """
    check_int("batch_size", batch_size, 1)
    if not args:
        raise SamInputError("args: expected at least one sequence to cut into batches, got none.")
    lengths = [len(arg) for arg in args]
    if len(set(lengths)) > 1:
        odd = next(i for i, n in enumerate(lengths) if n != lengths[0])
        raise SamInputError(
            f"args: expected sequences of one length, got lengths {lengths} "
            f"(args[{odd}] has {lengths[odd]} items, args[0] has {lengths[0]})."
        )
    step = int(batch_size)
    return ([arg[start : start + step] for arg in args] for start in range(0, lengths[0], step))


# ---- a table of per-mask data ----------------------------------------------------------------------------


class MaskData:
    """Columns of per-mask data (tensors, arrays or lists of equal length) filtered and joined together.

    ``data.filter(keep)`` keeps the same rows of every column (``keep`` is a boolean mask or indices);
    ``data.cat(new_stats)`` appends another table's rows.
    """

    def __init__(self, **columns: Any) -> None:
        self._columns: Dict[str, Any] = {}
        for key, value in columns.items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, (list, np.ndarray, torch.Tensor)):
            raise TypeError(f"MaskData column {key!r} must be a list, array or tensor, got {type(value).__name__}")
        self._columns[key] = value

    def __getitem__(self, key: str) -> Any:
        return self._columns[key]

    def __delitem__(self, key: str) -> None:
        del self._columns[key]

    def __contains__(self, key: str) -> bool:
        return key in self._columns

    def items(self):
        return self._columns.items()

    def filter(self, keep: torch.Tensor) -> None:
        keep = torch.as_tensor(keep)
        index = keep.nonzero().flatten() if keep.dtype == torch.bool else keep.flatten()
        index_list = index.tolist()
        for key, value in self._columns.items():
            if isinstance(value, torch.Tensor):
                self._columns[key] = value[index.to(value.device)]
            elif isinstance(value, np.ndarray):
                self._columns[key] = value[np.asarray(index_list, dtype=np.int64)]
            else:
                self._columns[key] = [value[i] for i in index_list]

    def cat(self, new_stats: "MaskData") -> None:
        for key, value in new_stats.items():
            if key not in self._columns:  # a copy: changing new_stats later must not change this table
                self._columns[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
            elif isinstance(value, torch.Tensor):
                self._columns[key] = torch.cat([self._columns[key], value], dim=0)
            elif isinstance(value, np.ndarray):
                self._columns[key] = np.concatenate([self._columns[key], value], axis=0)
            else:
                self._columns[key] = self._columns[key] + list(value)

    def to_numpy(self) -> None:
        for key, value in self._columns.items():
            if isinstance(value, torch.Tensor):
                self._columns[key] = value.detach().cpu().numpy()
