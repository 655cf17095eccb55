"""Click to segment: the interactive SAM widget for JupyterLab (ipywidgets + ipympl).

    from sam_from_scratch.interactive import ClickSegmenter
    segmenter = ClickSegmenter(image)          # image: (H, W, 3) uint8; the best model here unless you pass one
    segmenter                                  # last line of a cell: shows the widget

In the picture: left click adds a positive point ("this is the object"), right click (or the
"negative clicks" toggle, for touchpads) a negative one, and dragging draws a box. SAM answers with three
candidate masks and their predicted IoU; the highest is shown, the buttons under the picture pick another.

The image embedding is computed once, in ``set_image``; a click only runs the prompt encoder and the
mask decoder (``predictor.predict``). Each new prompt feeds the previous mask's low-resolution logits back as
``mask_input``, which is how SAM was trained to refine. The prompts and the undo/redo history live in a plain
:class:`~sam_from_scratch.interactive.prompt_state.PromptState`; the callbacks here only translate events and draw.
"""

from __future__ import annotations

import functools
import io
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from ..errors import SamInputError, check_choice, check_int, check_switch, expand_user, input_error
from .canvas import Picture, WidgetBase, as_rgb_uint8, private_copy
from .drawing import BOX_COLOR, NEGATIVE_COLOR, POSITIVE_COLOR, blend, object_colors, outline_width
from .models import check_methods, describe_model, load_predictor
from .prompt_state import PromptState

__all__ = ["AcceptedObject", "ClickSegmenter"]

DRAG_THRESHOLD_PX = 6  # a press and release further apart than this (screen pixels) is a box, not a click
EMBEDDED_FOR = "_sam_click_segmenter_image"  # set on the predictor: the token of the widget whose image it holds
MASK_MODES = {"auto": "auto", "3 masks": "multi", "1 mask": "single"}


@dataclass
class AcceptedObject:
    """One object the learner kept. mask: (H, W) bool; color: (3,) uint8 RGB; score: predicted IoU."""

    mask: np.ndarray
    color: np.ndarray
    score: float
    points: tuple
    labels: tuple
    box: Optional[tuple]


def _jpeg(array: np.ndarray) -> bytes:
    """Thumbnails change with every click: JPEG is quick to encode and small to send (and to save)."""
    with io.BytesIO() as buffer:
        Image.fromarray(array).save(buffer, format="jpeg", quality=85)
        return buffer.getvalue()


class ClickSegmenter(WidgetBase):
    """Interactive click-to-segment widget for one image.

    image: (H, W, 3) uint8 (or a PIL image); predictor: anything with the official ``SamPredictor`` API
    (``set_image``, ``predict``); model: used when predictor is None (see :func:`load_predictor`); give
    one of them, not both. Widgets may share a predictor: each embeds its image again when another was set since.
    mask_mode: "auto" (3 candidates for a single prompt, one click or a box alone, where it may be ambiguous;
    1 mask once there are more prompts, as Meta's SAM was trained), "multi" (always 3) or "single" (always 1).
    refine: feed the previous mask's low-resolution logits back as ``mask_input``.
    display_width: width of the picture on screen in pixels.

    After clicking, ``mask`` is the shown mask (H, W) bool, ``masks``/``scores`` the candidates,
    ``objects`` the accepted objects; ``label_map()`` and ``save_png()`` export them (``save_png`` and the
    "save PNG" button never replace an existing file unless told to: ``save_png(path, overwrite=True)``).
    """

    def __init__(
        self,
        image,
        predictor=None,
        *,
        model=None,
        mask_mode: str = "auto",
        refine: bool = True,
        display_width: int = 512,
        save_path: str = "sam_objects.png",
    ) -> None:
        check_choice("mask_mode", mask_mode, MASK_MODES.values())
        check_switch("refine", refine)
        check_int("display_width", display_width, 1)
        if not isinstance(save_path, (str, os.PathLike)) or Path(save_path).suffix.lower() != ".png":
            raise input_error("save_path", "a file name ending in .png for the 'save PNG' button, e.g. 'objects.png'",
                              save_path)  # known now, not when the button is pressed
        if predictor is not None:
            check_methods("predictor", predictor, ("set_image", "predict"),
                          "a SamPredictor (an object with set_image() and predict())")
            if model is not None:
                raise input_error("model", "None beside a predictor (which brings its own model)", model,
                                  "Pass predictor or model=..., not both.")
        self.image = private_copy(as_rgb_uint8(image))
        self.predictor = predictor if predictor is not None else load_predictor(model)
        self.state = self._new_state(refine)
        self.objects: list[AcceptedObject] = []
        self.timings: dict[str, float] = {}
        self._drag_start = None  # (x_px, y_px, x_data, y_data) of a press with the left button
        self._updating_choice = False
        self._thumbnails_of = None  # the prediction the thumbnails show
        self._thumbnail_photo = None
        self._thumbnail_widgets: list = []
        self._token = object()  # ours on the predictor while it holds our image (see _holds_own_image)
        self._embedding = None  # the predictor's features for our image (kept alive: one embedding, a few MB)

        self._build_picture(display_width)
        self._build_controls(mask_mode, str(save_path))
        self.set_image(self.image)

    def _build_picture(self, display_width: int) -> None:
        from matplotlib.patches import Rectangle

        self.picture = Picture(self.image, display_width)
        self.figure, self.canvas, self.axes = self.picture.figure, self.picture.canvas, self.picture.axes
        marker = dict(edgecolors="white", linewidths=1.2, zorder=3)
        self._positive_artist = self.axes.scatter([], [], s=160, marker="*", c=POSITIVE_COLOR, **marker)
        self._negative_artist = self.axes.scatter([], [], s=110, marker="X", c=NEGATIVE_COLOR, **marker)
        self._box_artist = Rectangle((0, 0), 0, 0, fill=False, edgecolor=BOX_COLOR, linewidth=2, visible=False, zorder=2)
        self.axes.add_patch(self._box_artist)
        self.canvas.mpl_connect("button_press_event", self._reported(self._on_press))
        self.canvas.mpl_connect("motion_notify_event", self._reported(self._on_motion))
        self.canvas.mpl_connect("button_release_event", self._reported(self._on_release))
        self.canvas.add_class("sam-canvas")

    def _build_controls(self, mask_mode: str, save_path: str) -> None:
        import ipywidgets as w

        def button(description, action, tooltip, icon=""):
            b = w.Button(description=description, tooltip=tooltip, icon=icon, layout=w.Layout(width="auto"))
            b.on_click(self._reported(lambda _: action()))
            return b

        row = functools.partial(w.HBox, layout=w.Layout(flex_flow="row wrap"))
        self.negative_toggle = w.ToggleButton(description="negative clicks", icon="minus-circle", layout=w.Layout(width="auto"),
                                              tooltip="Left clicks add negative points (for touchpads)")
        self.undo_button = button("undo", self.undo, "Undo the last prompt", "undo")
        self.redo_button = button("redo", self.redo, "Redo", "repeat")
        mode_names = {mode: name for name, mode in MASK_MODES.items()}
        self.mode_buttons = w.ToggleButtons(options=list(MASK_MODES), value=mode_names[mask_mode], style={"button_width": "80px"},
                                            tooltips=["3 masks for one click or a box alone, then 1",
                                                      "always 3 candidates", "always 1 mask"])
        self.mode_buttons.observe(self._reported(lambda _: self._predict()), names="value")
        self.choice_buttons = w.ToggleButtons(options=[], style={"button_width": "150px"})
        self.choice_buttons.observe(self._reported(self._on_choice), names="value")
        self.thumbnails = w.HBox([])
        self.save_name = w.Text(value=save_path, layout=w.Layout(width="180px"), tooltip="file for 'save PNG'")
        self.status = w.HTML()
        self.status.add_class("sam-status")
        prompts = row([
            self.negative_toggle, self.undo_button, self.redo_button,
            button("clear points", self.clear_points, "Remove every point"),
            button("clear box", self.clear_box, "Remove the box"),
            button("reset", self.reset, "Remove every prompt (undo brings them back)", "trash"),
        ])
        exports = row([
            button("accept object", self.accept, "Keep this mask as an object and start the next one", "check"),
            button("save PNG", lambda: self.save_png(self.save_name.value), "Write the overlay and the label map (.npy)", "save"),
            self.save_name,
        ])
        self.widget = w.VBox([self.canvas, self.status, prompts, self.mode_buttons, self.choice_buttons, self.thumbnails, exports])
        self.widget.add_class("sam-click-segmenter")

    # ----- image -----------------------------------------------------------------------------------------
    def set_image(self, image) -> None:
        """Show a new image and compute its embedding (the one expensive step); forgets prompts and objects.
        The widget keeps its own read-only copy: changing your array afterwards changes neither the picture nor
        the masks."""
        image = as_rgb_uint8(image)
        if image.shape != self.image.shape:
            raise SamInputError(f"image: expected the shape of the first image, {self.image.shape}, got {image.shape}; "
                                "for an image of another size, make a new ClickSegmenter")
        if not np.may_share_memory(image, self.image):  # a view of our own copy is read-only already
            image = private_copy(image)
        self._set_status("Computing the image embedding…")
        self._embed(image)
        self.image = image
        self.picture.set_image(image)
        self._thumbnail_photo = None
        self.state = self._new_state(self.state.refine)
        self.objects = []
        self._redraw()
        height, width = image.shape[:2]
        self._set_status(
            f"Image {width}×{height} embedded in {self.timings['embedding_s']:.2f} s by {_model_name(self.predictor)}. "
            "Left click: object · right click: not object · drag: box."
        )

    # ----- prompts (public: also usable from code) ---------------------------------------------------------
    def add_point(self, x: float, y: float, positive: bool = True) -> None:
        self.state.add_point(x, y, positive)
        self._predict()

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.state.set_box(x0, y0, x1, y1)
        self._predict()

    def undo(self) -> None:
        if not self.state.undo():
            self._set_status("Nothing to undo.")
            return
        self._show_state("Undone.")

    def redo(self) -> None:
        if not self.state.redo():
            self._set_status("Nothing to redo.")
            return
        self._show_state("Redone.")

    def clear_points(self) -> None:
        self.state.clear_points()
        self._predict()

    def clear_box(self) -> None:
        self.state.clear_box()
        self._predict()

    def reset(self) -> None:
        self.state.reset()
        self._predict()

    def choose(self, index: int) -> None:
        """Show candidate mask `index` instead of the one with the highest predicted IoU."""
        self.state.choose(index)
        self._show_state()

    # ----- results -------------------------------------------------------------------------------------------
    @property
    def mask(self) -> Optional[np.ndarray]:
        """The mask shown now, (H, W) bool, or None."""
        mask = self.state.mask
        return None if mask is None else mask.copy()

    @property
    def masks(self) -> Optional[np.ndarray]:
        prediction = self.state.prediction
        return None if prediction is None else prediction.masks.copy()

    @property
    def scores(self) -> Optional[np.ndarray]:
        prediction = self.state.prediction
        return None if prediction is None else prediction.scores.copy()

    def accept(self) -> AcceptedObject:
        """Keep the shown mask as an object with its own colour, then start the next object."""
        index = self.state.chosen_index
        if index is None:
            raise ValueError("accept: there is no mask yet; click on an object first")
        state = self.state
        kept = AcceptedObject(
            mask=state.mask.copy(), color=object_colors(len(self.objects) + 1)[-1],
            score=float(state.prediction.scores[index]), points=state.points, labels=state.labels, box=state.box,
        )
        self.objects.append(kept)
        self.state = self._new_state(state.refine)
        self._redraw()
        self._set_status(f"Object {len(self.objects)} accepted ({int(kept.mask.sum())} px). Click the next object.")
        return kept

    def label_map(self) -> np.ndarray:
        """(H, W) int32: 0 for background, k for the k-th accepted object (later objects on top)."""
        labels = np.zeros(self.image.shape[:2], np.int32)
        for k, obj in enumerate(self.objects, start=1):
            labels[obj.mask] = k
        return labels

    def overlay(self, include_current: bool = True) -> np.ndarray:
        """(H, W, 3) uint8: the image with every accepted object (and the current mask) blended in colour."""
        check_switch("include_current", include_current)
        outline = outline_width(self.image.shape[1], self.picture.photo.shape[1])  # as thick as on screen
        return blend(self.image, self._colored_masks(include_current), outline=outline)

    def save_png(self, path, overwrite: bool = False) -> Path:
        """Write the accepted objects: their overlay to `path` (.png) and the label map next to it
        (`<stem>_labels.npy`), so that the two files show the same objects. A current mask not yet accepted is
        in neither (the status line says so). Both files are written, or neither.

        An existing file is only replaced with ``overwrite=True``; otherwise nothing is written and a
        ``SamInputError`` says which file is in the way (the "save PNG" button shows it in the status line).
        """
        check_switch("overwrite", overwrite)
        if not isinstance(path, (str, os.PathLike)) or str(path) == "":
            raise input_error("path", "a file name ending in .png", path)
        path = expand_user("path", path, "a file name ending in .png")  # ~/objects.png, as a shell reads it
        if path.suffix.lower() != ".png":
            raise SamInputError(f"path: expected a file name ending in .png, got {str(path)!r}.")
        if not path.parent.is_dir():
            raise SamInputError(f"path: expected a file in an existing folder, got {str(path)!r}; "
                                f"{path.parent} is not a folder.")
        labels_path = path.with_name(path.stem + "_labels.npy")
        folders = [p.name for p in (path, labels_path) if p.is_dir()]
        if folders:  # never written over, overwrite or not
            raise SamInputError(f"path: expected a file name, got {str(path)!r}, but {' and '.join(folders)} "
                                f"{'is a folder' if len(folders) == 1 else 'are folders'} there. Nothing was saved.")
        existing = [p.name for p in (path, labels_path) if p.exists()]
        if existing and not overwrite:
            raise SamInputError(
                f"path: expected a file name not in use, got {str(path)!r}, but {' and '.join(existing)} already "
                f"exist{'s' if len(existing) == 1 else ''} there. Nothing was saved: choose another name, or call "
                "save_png(path, overwrite=True) to overwrite."
            )
        pending = ("; the current mask is not in them: accept it first to save it"
                   if self.state.mask is not None else "")
        written = []
        try:  # each to a temporary name first, then both renamed: no half export left behind
            for final, write in ((path, lambda f: Image.fromarray(self.overlay(include_current=False)).save(f, "PNG")),
                                 (labels_path, lambda f: np.save(f, self.label_map()))):
                temporary = final.with_name(f".{final.name}.partial")
                written.append((temporary, final))
                with open(temporary, "wb") as file:
                    write(file)
            for temporary, final in written:
                os.replace(temporary, final)
        except OSError as error:
            for temporary, _ in written:
                temporary.unlink(missing_ok=True)
            raise SamInputError(f"path: could not write {path.name} and {labels_path.name} in {path.parent} ({error}). "
                                "Nothing was saved.") from error
        self._set_status(f"Saved {path.name} and {path.stem}_labels.npy ({len(self.objects)} objects{pending}).")
        return path

    def _new_state(self, refine: bool) -> PromptState:
        """Empty prompts for this image: points and box corners outside it are refused."""
        return PromptState(refine=refine, image_size=self.image.shape[:2])

    # ----- mouse events ------------------------------------------------------------------------------------------
    def _inside_image(self, event) -> bool:
        height, width = self.image.shape[:2]
        return (
            event.inaxes is self.axes and event.xdata is not None
            and -0.5 <= event.xdata <= width - 0.5 and -0.5 <= event.ydata <= height - 0.5
        )

    def _on_press(self, event) -> None:
        if event.dblclick or not self._inside_image(event):
            return
        x, y = max(event.xdata, 0.0), max(event.ydata, 0.0)  # the outer half of the first pixel is on it too
        if event.button == 3:  # right button: a negative point right away
            self.add_point(x, y, positive=False)
        elif event.button == 1:
            self._drag_start = (event.x, event.y, x, y)

    def _on_motion(self, event) -> None:
        if self._drag_start is None:
            return
        if event.buttons is not None and 1 not in event.buttons:  # released outside the canvas: no drag any more
            self._drag_start = None
            self.canvas.toolbar.remove_rubberband()
            return
        x0, y0, _, _ = self._drag_start
        if np.hypot(event.x - x0, event.y - y0) >= DRAG_THRESHOLD_PX:
            # drawn by the browser on a layer above the picture: no re-render while dragging
            self.canvas.toolbar.draw_rubberband(event, x0, y0, event.x, event.y)

    def _on_release(self, event) -> None:
        if self._drag_start is None or event.button != 1:
            return
        x0, y0, start_x, start_y = self._drag_start
        self._drag_start = None
        self.canvas.toolbar.remove_rubberband()
        if np.hypot(event.x - x0, event.y - y0) >= DRAG_THRESHOLD_PX:
            end_x, end_y = self.axes.transData.inverted().transform((event.x, event.y))
            height, width = self.image.shape[:2]
            self.set_box(start_x, start_y, float(np.clip(end_x, 0, width - 1)), float(np.clip(end_y, 0, height - 1)))
        else:
            self.add_point(start_x, start_y, positive=not self.negative_toggle.value)

    def _on_choice(self, change) -> None:
        if not self._updating_choice and change["new"] is not None:
            self.choose(change["new"])

    # ----- predicting and drawing ----------------------------------------------------------------------------------
    def _multimask(self) -> bool:
        mode = MASK_MODES[self.mode_buttons.value]
        if mode == "auto":
            return len(self.state.points) + (self.state.box is not None) <= 1
        return mode == "multi"

    def _embed(self, image: np.ndarray) -> None:
        """Set `image` on the predictor (the image encoder runs) and remember that it holds our image."""
        start = time.perf_counter()
        self.predictor.set_image(image)
        self.timings["embedding_s"] = time.perf_counter() - start
        try:
            setattr(self.predictor, EMBEDDED_FOR, self._token)
        except AttributeError:  # a predictor with __slots__: its features alone tell
            pass
        self._embedding = getattr(self.predictor, "features", None)

    def _holds_own_image(self) -> bool:
        """Whether the predictor still holds our image. Widgets may share one predictor (one model in memory), and
        the user may call its set_image too: each set_image makes a new features tensor, and each widget leaves its
        own token on the predictor. (For a predictor without features, only the widgets' set_image calls show.)"""
        own_token = getattr(self.predictor, EMBEDDED_FOR, self._token) is self._token
        return own_token and getattr(self.predictor, "features", None) is self._embedding

    def _predict(self) -> None:
        """Run the prompt encoder + mask decoder for the current prompts (the embedding is reused, unless the
        predictor has been given another image since: then ours is embedded again, or the masks would be the other
        image's)."""
        prefix = ""
        if not self.state.current.is_empty:
            if not self._holds_own_image():
                self._embed(self.image)
                prefix = (f"Image embedded again ({self.timings['embedding_s']:.2f} s): the predictor had been given "
                          "another image.")
            start = time.perf_counter()
            masks, scores, logits = self.predictor.predict(**self.state.predictor_kwargs(self._multimask()))
            self.timings["predict_ms"] = (time.perf_counter() - start) * 1e3
            self.state.record_prediction(masks, scores, logits)
        self._show_state(prefix)

    def _show_state(self, prefix: str = "") -> None:
        start = time.perf_counter()
        self._redraw()
        self.timings["draw_ms"] = (time.perf_counter() - start) * 1e3
        self._set_status(" ".join(filter(None, [prefix, self._describe()])))

    def _describe(self) -> str:
        state = self.state
        prompts = f"{state.labels.count(1)} positive, {state.labels.count(0)} negative points" + (", box" if state.box else "")
        if state.prediction is None:
            return f"No prompts. {len(self.objects)} objects accepted." if state.current.is_empty else prompts
        index, scores = state.chosen_index, state.prediction.scores
        return (
            f"Mask {index + 1} of {len(scores)}: predicted IoU {scores[index]:.3f}, {int(state.mask.sum())} px · "
            f"{prompts} · decoder {self.timings.get('predict_ms', 0):.0f} ms"
        )

    def _colored_masks(self, include_current: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        """(mask, colour) of every accepted object, then the current mask in the next object's colour."""
        masks = [(obj.mask, obj.color) for obj in self.objects]
        if include_current and self.state.mask is not None:
            masks.append((self.state.mask, object_colors(len(self.objects) + 1)[-1]))
        return masks

    def _redraw(self) -> None:
        state = self.state
        self.picture.show(self._colored_masks())
        points = np.asarray(state.points, dtype=float).reshape(-1, 2)
        labels = np.asarray(state.labels, dtype=int)
        self._positive_artist.set_offsets(points[labels == 1])
        self._negative_artist.set_offsets(points[labels == 0])
        if state.box is not None:
            x0, y0, x1, y1 = state.box
            self._box_artist.set_bounds(x0, y0, x1 - x0, y1 - y0)
        self._box_artist.set_visible(state.box is not None)
        self.undo_button.disabled = not state.can_undo
        self.redo_button.disabled = not state.can_redo
        self._update_candidates()

    def _update_candidates(self) -> None:
        prediction = self.state.prediction
        self._updating_choice = True
        try:
            if prediction is None:
                self.choice_buttons.options, self.thumbnails.children = [], ()
                return
            options = [(f"mask {i + 1} · IoU {s:.2f}", i) for i, s in enumerate(prediction.scores)]
            if list(self.choice_buttons.options) != options:
                self.choice_buttons.options = options
            self.choice_buttons.value = self.state.chosen_index
            if self._thumbnails_of is not prediction:  # picking another candidate needs no new thumbnails
                self._show_thumbnails(prediction.masks)
                self._thumbnails_of = prediction
        finally:
            self._updating_choice = False

    def _show_thumbnails(self, masks: np.ndarray) -> None:
        """One small picture per candidate mask, tinted yellow, reusing the Image widgets."""
        import ipywidgets as w

        height, width = self.image.shape[:2]
        size = (96, max(1, round(96 * height / width)))  # (width, height) for PIL
        if self._thumbnail_photo is None or self._thumbnail_photo.shape[:2] != size[::-1]:
            self._thumbnail_photo = np.asarray(Image.fromarray(self.image).resize(size, Image.BILINEAR), np.float32)
        while len(self._thumbnail_widgets) < len(masks):
            self._thumbnail_widgets.append(w.Image(format="jpeg", layout=w.Layout(width="150px", margin="0 4px 0 0")))
        for mask, widget in zip(masks, self._thumbnail_widgets):
            coverage = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR), np.float32)[:, :, None] / 255
            tinted = self._thumbnail_photo * (1 - 0.6 * coverage) + np.array([255, 220, 0]) * 0.6 * coverage
            widget.value = _jpeg(tinted.round().astype(np.uint8))
        self.thumbnails.children = tuple(self._thumbnail_widgets[: len(masks)])


def _model_name(predictor) -> str:
    """How the status line names the predictor's model ('SAM vit_b', 'the small course model (tiny)', ...)."""
    model = getattr(predictor, "model", None)
    return type(predictor).__name__ if model is None else describe_model(model)
