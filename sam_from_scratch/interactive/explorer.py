"""The automatic mask generator's masks in a widget, filtered live by predicted IoU and stability score.

    from sam_from_scratch.interactive import AutomaticMaskExplorer
    AutomaticMaskExplorer(image)               # runs the generator once, then the sliders only re-filter
"""

from __future__ import annotations

import functools
import math
import time
from typing import Optional, Sequence

import numpy as np

from ..errors import SamInputError, check_int, check_number, input_error, is_number
from .canvas import Picture, WidgetBase, as_rgb_uint8, private_copy
from .drawing import as_bool_masks, object_colors
from .models import check_methods, load_model

__all__ = ["AutomaticMaskExplorer"]

RECORD_KEYS = ("segmentation", "area", "predicted_iou", "stability_score")  # what the explorer reads of a record


class AutomaticMaskExplorer(WidgetBase):
    """The automatic mask generator's masks, filtered live by predicted IoU and stability score.

    The generator runs once with both thresholds at 0, keeping every mask it finds (a generator of yours runs
    with its own, and the sliders start there: lower, they bring nothing back); moving a slider only re-filters
    those records, so it is instant. (Box NMS ran on the unfiltered set, so a mask the generator
    would keep at a high threshold can be missing here if a lower-scoring twin suppressed it: close enough to
    learn what the thresholds do.)

    image: (H, W, 3) uint8; records: precomputed generator output for this image (dicts with "segmentation",
    (H, W) bool or 0/1 integers, and the numbers "predicted_iou", "stability_score", "area"), or None to run
    `generator` (default: the package's ``SamAutomaticMaskGenerator`` on `model`, with `generator_kwargs`).
    Give one of records, generator and model (with its generator_kwargs); pred_iou_thresh and
    stability_score_thresh: None or in [0, 1].

    The sliders start at the official thresholds (with records, whose model is unknown), at a given generator's
    own, or, for the small course model, at those its card recommends where none is given
    (``generator_filters``; its stability scores use the card's offset); the status line says which.
    """

    def __init__(self, image, records: Optional[Sequence[dict]] = None, *, generator=None, model=None,
                 pred_iou_thresh: Optional[float] = None, stability_score_thresh: Optional[float] = None,
                 display_width: int = 512,
                 **generator_kwargs) -> None:
        import ipywidgets as w

        from ..automatic_mask_generator import OFFICIAL_FILTERS, SamAutomaticMaskGenerator, generator_filters

        check_int("display_width", display_width, 1)  # before the generator runs, which takes a while
        for name, value in (("pred_iou_thresh", pred_iou_thresh), ("stability_score_thresh", stability_score_thresh)):
            if value is not None:
                check_number(name, value, 0, 1)  # the sliders' range
        if generator is not None:
            check_methods("generator", generator, ("generate",),
                          "a SamAutomaticMaskGenerator (an object with generate(image))")
        if isinstance(records, str) or hasattr(records, "image_encoder"):  # AutomaticMaskExplorer(image, model)
            raise SamInputError("records: expected the generator's output (a list of dicts), got a model. "
                                "Pass the model as model=... instead.")
        _check_unused(records, generator, model, generator_kwargs)
        self.image = private_copy(as_rgb_uint8(image))  # what it shows stays what the masks were made of
        if records is not None:
            records = _checked_records(records, self.image.shape[:2])
        self.generate_seconds = 0.0
        filters, self.filter_note = dict(OFFICIAL_FILTERS), None
        if records is None:
            if generator is None:
                model = load_model(model)
                filters, self.filter_note = generator_filters(model, pred_iou_thresh, stability_score_thresh)
                generator_kwargs.setdefault("stability_score_offset", filters["stability_score_offset"])
                generator = SamAutomaticMaskGenerator(model, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                                      **generator_kwargs)
            else:  # the user's generator filters with its own thresholds first: the sliders start there
                filters = {name: getattr(generator, name, value) for name, value in filters.items()}
            start = time.perf_counter()
            records = generator.generate(self.image)
            self.generate_seconds = time.perf_counter() - start
            records = _checked_records(records, self.image.shape[:2])
        self.records = sorted(records, key=lambda r: r["area"], reverse=True)  # big first, small drawn on top

        self.picture = Picture(self.image, display_width)
        self.figure, self.canvas, self.axes = self.picture.figure, self.picture.canvas, self.picture.axes
        slider = functools.partial(w.FloatSlider, min=0.0, max=1.0, step=0.01, continuous_update=True,
                                   style={"description_width": "150px"}, layout=w.Layout(width="420px"))
        pick = lambda given, name: filters[name] if given is None else given  # noqa: E731
        self.iou_slider = slider(value=pick(pred_iou_thresh, "pred_iou_thresh"), description="predicted IoU >")
        self.stability_slider = slider(value=pick(stability_score_thresh, "stability_score_thresh"),
                                       description="stability score ≥")
        for s in (self.iou_slider, self.stability_slider):
            s.observe(self._reported(lambda _: self.refresh()), names="value")
        self.status = w.HTML()
        self.status.add_class("sam-status")
        self.widget = w.VBox([self.canvas, self.iou_slider, self.stability_slider, self.status])
        self.widget.add_class("sam-mask-explorer")
        self.refresh()

    @property
    def kept(self) -> list[dict]:
        """The records that pass both thresholds, largest first (as in the generator: a threshold of 0 keeps all,
        otherwise the predicted IoU must be above its threshold and the stability score at least its own)."""
        iou, stability = self.iou_slider.value, self.stability_slider.value
        return [r for r in self.records
                if (iou <= 0 or r["predicted_iou"] > iou) and (stability <= 0 or r["stability_score"] >= stability)]

    def refresh(self) -> None:
        """Re-filter the records with the sliders' thresholds and redraw (no model call)."""
        kept = self.kept
        self.picture.show([(record["segmentation"], color) for record, color in zip(kept, object_colors(len(kept)))])
        ran = f" (generator ran once, {self.generate_seconds:.1f} s)" if self.generate_seconds else ""
        note = f" Starting filters: {self.filter_note}." if self.filter_note else ""
        self._set_status(f"{len(kept)} of {len(self.records)} masks kept{ran}.{note}")


def _check_unused(records, generator, model, generator_kwargs: dict) -> None:
    """Refuse what the explorer would ignore: model and generator settings build a generator, so they have no
    use beside records or a generator, and a generator has none beside records."""
    if records is not None and generator is not None:
        raise SamInputError("records, generator: expected one of them, got both; the generator would not run. "
                            "Leave one out.")
    given = "records" if records is not None else "generator" if generator is not None else None
    if given is None:  # a misspelt setting would otherwise stop the generator's __init__ with a TypeError
        import difflib
        import inspect

        from ..automatic_mask_generator import SamAutomaticMaskGenerator

        known = [name for name in inspect.signature(SamAutomaticMaskGenerator).parameters if name != "model"]
        for name in generator_kwargs:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise SamInputError(f"{name}: expected a setting of SamAutomaticMaskGenerator ({', '.join(known)}), "
                                    f"got {name}={generator_kwargs[name]!r:.40}.{hint}")
        mode = generator_kwargs.get("output_mode", "binary_mask")
        if mode != "binary_mask":  # known now, not after the generator has run
            raise SamInputError(f"output_mode: expected 'binary_mask' (the explorer draws (H, W) bool masks), got "
                                f"{mode!r:.40}.")
    unused = ({"model": model} if model is not None else {}) | generator_kwargs
    if given is not None and unused:
        got = ", ".join(f"{name}={value!r:.40}" for name, value in unused.items())
        how = "build the generator with them" if given == "generator" else "pass them instead of the records"
        raise SamInputError(f"{', '.join(unused)}: expected no model or generator settings beside {given}= "
                            f"(they only build a generator), got {got}. Leave them out, or {how}.")


def _checked_records(records, size: tuple[int, int]) -> list[dict]:
    """The generator's output for an image of `size` (H, W): a list of dicts with the keys the explorer reads,
    a binary mask of that size and numbers for the scores and area. A mask stored as 0/1 integers comes back as
    bool in a copy of its record (the caller's records stay as they are); the other records come back as given."""
    if isinstance(records, dict):
        raise input_error("records", "the generator's output (a list of dicts)", records,
                          "For a single record: [record].")
    if not isinstance(records, (list, tuple)):
        raise input_error("records", "the generator's output (a list of dicts)", records)
    checked = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise input_error(f"records[{index}]", "a dict (one mask's record from the generator)", record)
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise SamInputError(f"records[{index}]: expected the keys {', '.join(map(repr, RECORD_KEYS))}, got keys "
                                f"{list(record)}; {', '.join(map(repr, missing))} missing.")
        segmentation = record["segmentation"]
        if not isinstance(segmentation, np.ndarray):
            raise SamInputError("records: expected output_mode='binary_mask' (segmentation as an (H, W) bool array), "
                                f"got records[{index}]['segmentation'] as {type(segmentation).__name__}.")
        if segmentation.shape != tuple(size):
            hint = ("Is one of them transposed (H and W swapped)?" if segmentation.shape == tuple(size)[::-1]
                    else "Were the records made for another image? Pass the image they were generated from.")
            raise SamInputError(f"records: expected masks of the image's size (H, W) = {tuple(size)}, got "
                                f"records[{index}]['segmentation'] of shape {segmentation.shape}. {hint}")
        mask = as_bool_masks(f"records[{index}]['segmentation']", segmentation)
        for key in ("predicted_iou", "stability_score"):  # NaN passes: the generator's stability of an empty mask
            if not is_number(record[key]):
                raise input_error(f"records[{index}][{key!r}]", "a number", record[key])
        if not (is_number(record["area"]) and 0 <= record["area"] < math.inf):  # the drawing order, largest first
            raise input_error(f"records[{index}]['area']", "a number >= 0 (the mask's pixel count)", record["area"])
        checked.append(record if mask is segmentation else dict(record, segmentation=mask))
    return checked
