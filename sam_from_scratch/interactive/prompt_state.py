"""The state behind the click-to-segment widget, kept apart from any user interface.

A :class:`PromptState` holds what the learner has said so far (positive and negative points, an optional
box), which of the candidate masks they picked, and a history so that every change can be undone and redone.

Each change makes a new immutable :class:`PromptSnapshot`. A snapshot also remembers the prediction made for
it (masks, predicted IoU, low-resolution logits) and the ``mask_input`` that prediction was made with, so that
undo brings back exactly the mask the learner saw before, without running the model again.

Nothing here imports torch or a plotting library: the widget (``interactive.click_segmenter``) turns mouse events
into calls on this class and draws what it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from ..errors import check_int, check_switch, input_error, is_int, is_number
from .drawing import as_bool_masks

__all__ = ["Prediction", "PromptSnapshot", "PromptState"]


@dataclass(frozen=True)
class Prediction:
    """What the predictor returned for one snapshot.

    masks: (C, H, W) bool, C = 3 in multimask mode, 1 otherwise.
    scores: (C,) float, the predicted IoU of each mask.
    low_res_logits: (C, 256, 256) float (48 x 48 for the small model), the logits a later prompt may feed
        back as ``mask_input``.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best_index(self) -> int:
        """Index of the mask with the highest predicted IoU."""
        return int(np.argmax(self.scores))


@dataclass(frozen=True)
class PromptSnapshot:
    """One point in the history: the prompts, the mask chosen, and the prediction made for them.

    points: tuple of (x, y) in image pixel coordinates (x to the right, y down).
    labels: tuple of 1 (positive, "this is the object") or 0 (negative, "this is not").
    box: (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1, or None.
    mask_input: (1, 256, 256) logits (48 x 48 for the small model) the prediction was (or will be) made with,
        or None.
    chosen: index of the candidate mask the learner picked, or None for "the highest predicted IoU".
    prediction: the predictor's answer for these prompts, or None while not yet predicted.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: Optional[tuple[float, float, float, float]] = None
    mask_input: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    chosen: Optional[int] = None
    prediction: Optional[Prediction] = field(default=None, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        """True when there is neither a point nor a box, so there is nothing to predict."""
        return not self.points and self.box is None


class PromptState:
    """Points, labels, box, chosen mask and an undo/redo history for one image.

    Every method that changes the prompts pushes the current snapshot onto the undo stack and clears the
    redo stack, like a text editor. ``refine=True`` makes each new prompt carry the low-resolution
    logits of the mask shown (the best-rated, or the one chosen) as ``mask_input`` (what SAM was trained to
    use for follow-up clicks); removing prompts (clear points, clear box, reset) drops them, since they describe the old prompts.
    ``image_size=(height, width)`` refuses points and box corners outside the image.
    """

    def __init__(self, refine: bool = True, max_history: int = 100,
                 image_size: Optional[tuple[int, int]] = None) -> None:
        check_switch("refine", refine)
        check_int("max_history", max_history, 1)
        if image_size is not None:
            image_size = _image_size(image_size)
        self.refine = bool(refine)
        self.max_history = int(max_history)
        self.image_size = image_size
        self.current = PromptSnapshot()
        self._undo: list[PromptSnapshot] = []
        self._redo: list[PromptSnapshot] = []

    # ----- reading -----------------------------------------------------------------------------------
    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        return self.current.points

    @property
    def labels(self) -> tuple[int, ...]:
        return self.current.labels

    @property
    def box(self) -> Optional[tuple[float, float, float, float]]:
        return self.current.box

    @property
    def prediction(self) -> Optional[Prediction]:
        return self.current.prediction

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def chosen_index(self) -> Optional[int]:
        """The mask shown: the learner's pick, else the highest predicted IoU; None before any prediction."""
        prediction = self.current.prediction
        if prediction is None:
            return None
        if self.current.chosen is not None and self.current.chosen < len(prediction.scores):
            return self.current.chosen
        return prediction.best_index

    @property
    def mask(self) -> Optional[np.ndarray]:
        """The chosen mask, (H, W) bool, or None when nothing has been predicted."""
        index = self.chosen_index
        return None if index is None else self.current.prediction.masks[index]

    def predictor_kwargs(self, multimask_output: bool = True) -> dict:
        """Keyword arguments for ``SamPredictor.predict`` describing the current prompts.

        point_coords: (N, 2) float32 or None; point_labels: (N,) int64 or None; box: (4,) float32 or None;
        mask_input: (1, 256, 256) float32 or None.
        """
        snapshot = self.current
        coords = np.asarray(snapshot.points, dtype=np.float32).reshape(-1, 2) if snapshot.points else None
        labels = np.asarray(snapshot.labels, dtype=np.int64) if snapshot.labels else None
        box = None if snapshot.box is None else np.asarray(snapshot.box, dtype=np.float32)
        return dict(
            point_coords=coords,
            point_labels=labels,
            box=box,
            mask_input=snapshot.mask_input,
            multimask_output=multimask_output,
        )

    # ----- changing the prompts (each is one undo step) ---------------------------------------------------
    def add_point(self, x: float, y: float, positive: bool = True) -> None:
        """Add a positive (label 1) or negative (label 0) point at pixel (x, y)."""
        x, y = self._coordinate("x", x), self._coordinate("y", y)
        check_switch("positive", positive)
        snapshot = self.current
        self._push(
            PromptSnapshot(
                points=snapshot.points + ((x, y),),
                labels=snapshot.labels + (1 if positive else 0,),
                box=snapshot.box,
                mask_input=self._carried_logits(),
            )
        )

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Set (or replace) the box; the corners may come in any order, e.g. from a drag up and to the left."""
        x0, y0, x1, y1 = (self._coordinate(n, v) for n, v in zip(("x0", "y0", "x1", "y1"), (x0, y0, x1, y1)))
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        snapshot = self.current
        self._push(
            PromptSnapshot(
                points=snapshot.points, labels=snapshot.labels, box=box, mask_input=self._carried_logits()
            )
        )

    def clear_points(self) -> None:
        """Remove every point, keep the box."""
        if self.current.points:
            self._push(PromptSnapshot(box=self.current.box))

    def clear_box(self) -> None:
        """Remove the box, keep the points."""
        if self.current.box is not None:
            self._push(PromptSnapshot(points=self.current.points, labels=self.current.labels))

    def reset(self) -> None:
        """Start over with no prompts. Undo-able, so a mistaken reset costs nothing."""
        if not self.current.is_empty:
            self._push(PromptSnapshot())

    def choose(self, index: int) -> None:
        """Pick candidate mask `index` (0, 1 or 2) instead of the highest predicted IoU. Not an undo step."""
        prediction = self.current.prediction
        if prediction is None:
            raise ValueError("choose: there are no candidate masks yet; add a point or a box first")
        count = len(prediction.scores)
        if not is_int(index) or not 0 <= index < count:
            raise input_error("index", f"an integer in [0, {count - 1}] ({count} candidate mask"
                                       f"{'s' if count > 1 else ''}, numbered from 0)", index)
        self.current = replace(self.current, chosen=int(index))

    def record_prediction(self, masks: np.ndarray, scores: np.ndarray, low_res_logits: np.ndarray) -> None:
        """Attach the predictor's answer (masks C×H×W bool, scores C, logits C×256×256) to the current snapshot.
        With an image size, the masks must have it; masks of 0/1 integers are taken as bool."""
        masks = as_bool_masks("masks", masks, self.image_size, stacked=True).copy()  # the history keeps its own
        count, same = len(masks), f"(the same C as masks {masks.shape})"
        scores = _per_mask("scores", scores, count, 1, "iuf",
                           f"one predicted IoU per mask, numbers of shape ({count},) {same}")
        low_res_logits = _per_mask("low_res_logits", low_res_logits, count, 3, "f",
                                   f"(C, h, w) float logits with C = {count} {same}")
        chosen = self.current.chosen if self.current.chosen is not None and self.current.chosen < len(scores) else None
        self.current = replace(
            self.current,
            prediction=Prediction(masks=masks, scores=scores, low_res_logits=low_res_logits),
            chosen=chosen,
        )

    # ----- history --------------------------------------------------------------------------------------------
    def undo(self) -> bool:
        """Go back one step; returns False (and changes nothing) when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append(self.current)
        self.current = self._undo.pop()
        return True

    def redo(self) -> bool:
        """Re-apply the last undone step; returns False when there is nothing to redo."""
        if not self._redo:
            return False
        self._undo.append(self.current)
        self.current = self._redo.pop()
        return True

    def _push(self, snapshot: PromptSnapshot) -> None:
        self._undo.append(self.current)
        del self._undo[: -self.max_history]
        self._redo.clear()
        self.current = snapshot

    def _coordinate(self, name: str, value) -> float:
        """`value` as a float; with an image size, it must lie on the image (as the predictor wants it): x (or
        x0, x1) in [0, width], y in [0, height]."""
        number = _finite_number(name, value)
        if self.image_size is not None:
            height, width = self.image_size
            limit = width if name.startswith("x") else height
            if not 0 <= number <= limit:
                raise input_error(name, f"a number in [0, {limit}] (the image is {width}×{height} pixels)", value)
        return number

    def _carried_logits(self) -> Optional[np.ndarray]:
        """Low-res logits of the mask currently shown, (1, 256, 256), when refining; else None."""
        index = self.chosen_index
        if not self.refine or index is None:
            return None
        return self.current.prediction.low_res_logits[index][None]  # (256, 256) -> (1, 256, 256)


def _image_size(value) -> tuple[int, int]:
    """(height, width) as two positive Python ints; anything else is a SamInputError naming image_size."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else None
    if pair is None or len(pair) != 2 or not all(is_int(n) and n > 0 for n in pair):
        raise input_error("image_size", "(H, W), two positive integers, or None", value,
                          "For an image array: image.shape[:2].")
    return int(pair[0]), int(pair[1])


def _per_mask(argument: str, value, count: int, ndim: int, kinds: str, expected: str) -> np.ndarray:
    """`value` as an array of `ndim` dimensions, one entry per mask along the first (`count`), of numpy kinds
    `kinds` ("f" floats, "iu" integers); anything else is a SamInputError naming `argument`."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, RuntimeError):  # ragged lists, a tensor on the GPU
        array = None
    if array is None or array.dtype.kind not in kinds or array.ndim != ndim or len(array) != count:
        raise input_error(argument, expected, value)
    return array


def _finite_number(name: str, value) -> float:
    """`value` as a finite float; else a SamInputError naming `name` (a coordinate: x, y, x0, ...). A number is
    Python's or numpy's int or float, or a 0-d array or tensor of one, as the predictor takes them: not a bool, and
    not text such as "10", which float() would read."""
    scalar = value.item() if getattr(value, "shape", None) == () and hasattr(value, "item") else value
    try:
        number = float(scalar) if is_number(scalar) else np.nan
    except OverflowError:  # an int too large for a float
        number = np.inf
    if not np.isfinite(number):
        raise input_error(name, "a finite number (pixels)", value)
    return number
