"""The automatic mask generator's masks in a widget, filtered live by predicted IoU and stability score.

    from sam_from_scratch.interactive import AutomaticMaskExplorer
    AutomaticMaskExplorer(image)               # runs the generator once, then the sliders only re-filter
"""

from __future__ import annotations

import functools
import time
from typing import Optional, Sequence

import numpy as np

from ..errors import SamInputError, check_int
from .canvas import Picture, WidgetBase, as_rgb_uint8
from .drawing import object_colors
from .models import check_methods, load_model

__all__ = ["AutomaticMaskExplorer"]


class AutomaticMaskExplorer(WidgetBase):
    """The automatic mask generator's masks, filtered live by predicted IoU and stability score.

    The generator runs once with both thresholds at 0, keeping every mask it finds; moving a slider only
    re-filters those records, so it is instant. (Box NMS ran on the unfiltered set, so a mask the generator
    would keep at a high threshold can be missing here if a lower-scoring twin suppressed it: close enough to
    learn what the thresholds do.)

    image: (H, W, 3) uint8; records: precomputed generator output (dicts with "segmentation",
    "predicted_iou", "stability_score", "area"), or None to run `generator` (default: the package's
    ``SamAutomaticMaskGenerator`` on `model`, with `generator_kwargs`).

    The sliders start at the official thresholds, or, for the small course model when none are given, at those
    its card recommends (``generator_filters``); the status line says which.
    """

    def __init__(self, image, records: Optional[Sequence[dict]] = None, *, generator=None, model=None,
                 pred_iou_thresh: Optional[float] = None, stability_score_thresh: Optional[float] = None,
                 display_width: int = 512,
                 **generator_kwargs) -> None:
        import ipywidgets as w

        from ..automatic_mask_generator import OFFICIAL_FILTERS, SamAutomaticMaskGenerator, generator_filters

        check_int("display_width", display_width, 1)  # before the generator runs, which takes a while
        if generator is not None:
            check_methods("generator", generator, ("generate",),
                          "a SamAutomaticMaskGenerator (an object with generate(image))")
        if isinstance(records, str) or hasattr(records, "image_encoder"):  # AutomaticMaskExplorer(image, model)
            raise SamInputError("records: expected the generator's output (a list of dicts), got a model. "
                                "Pass the model as model=... instead.")
        self.image = as_rgb_uint8(image)
        self.generate_seconds = 0.0
        filters, self.filter_note = dict(OFFICIAL_FILTERS), None
        if records is None:
            if generator is None:
                model = load_model(model)
                filters, self.filter_note = generator_filters(model, pred_iou_thresh, stability_score_thresh)
                generator_kwargs.setdefault("stability_score_offset", filters["stability_score_offset"])
                generator = SamAutomaticMaskGenerator(model, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                                      **generator_kwargs)
            start = time.perf_counter()
            records = generator.generate(self.image)
            self.generate_seconds = time.perf_counter() - start
        self.records = sorted(records, key=lambda r: r["area"], reverse=True)  # big first, small drawn on top
        for record in self.records:
            if not isinstance(record.get("segmentation"), np.ndarray):
                raise SamInputError("records: expected output_mode='binary_mask' (segmentation as an (H, W) bool array)")

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
