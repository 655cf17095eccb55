"""What both widgets stand on: a matplotlib figure on ipympl's canvas widget, the picture drawn on it, and
the error reporting and display every widget shares.

The figure is a ``matplotlib.figure.Figure`` on ipympl's canvas widget, made without pyplot, so it is never
shown twice and works whatever ``%matplotlib`` backend the notebook uses. JupyterLab needs no extension build:
ipympl and ipywidgets ship prebuilt ones.
"""

from __future__ import annotations

import functools
import importlib.util
import traceback
import warnings
from html import escape
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from .drawing import OUTLINE_PX, blend

COURSE_EXTRAS = ("matplotlib", "ipywidgets", "ipympl")
_missing = [name for name in COURSE_EXTRAS if importlib.util.find_spec(name) is None]
if _missing:
    raise ImportError(
        f"the interactive widgets need {', '.join(COURSE_EXTRAS)}, and {', '.join(_missing)} "
        f'{"is" if len(_missing) == 1 else "are"} not installed: pip install "sam-from-scratch[course]"'
    )

__all__ = ["Picture", "WidgetBase", "as_rgb_uint8", "interactive_figure", "private_copy"]


def interactive_figure(width_px: int, height_px: int, dpi: int = 100):
    """A matplotlib ``Figure`` on ipympl's canvas widget, made without pyplot; returns (figure, canvas).

    The canvas is an ipywidget: put it in a layout, or make it the last line of a cell to show it.
    ``canvas.mpl_connect("button_press_event", f)`` then calls ``f`` for clicks in the browser. Not going
    through pyplot means the figure is never shown twice and the notebook's ``%matplotlib`` backend stays
    what it was (importing ipympl switches it to ipympl, so we switch it back).
    """
    import matplotlib

    backend = matplotlib.get_backend(auto_select=False)  # None when not chosen yet
    from ipympl.backend_nbagg import Canvas, FigureManager
    from matplotlib.figure import Figure

    if backend is not None and matplotlib.get_backend(auto_select=False) != backend:
        matplotlib.use(backend)
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    canvas = Canvas(figure)
    with warnings.catch_warnings():  # ipympl's toolbar passes its canvas on to traitlets, which warns; harmless
        warnings.filterwarnings("ignore", "Passing unrecognized arguments to super", DeprecationWarning)
        FigureManager(canvas, 0)  # routes the browser's messages (clicks, resizes) to matplotlib events
    return figure, canvas


def as_rgb_uint8(image, argument: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 from a numpy array (checked like ``SamPredictor.set_image`` does) or a PIL image."""
    from ..predictor import as_rgb_uint8 as checked
    from ..utils.images import as_rgb

    if isinstance(image, Image.Image):
        image = as_rgb(image)  # 16-bit greyscale scaled, not clipped
    return np.ascontiguousarray(checked(image, argument))


def private_copy(image: np.ndarray) -> np.ndarray:
    """A read-only copy of `image` that only the widget holds, so that what it shows and saves stays the image its
    masks were made of, whatever happens to the caller's array."""
    image = image.copy()
    image.flags.writeable = False
    return image


class Picture:
    """The picture of a widget: an image on an ipympl canvas with coloured masks blended in.

    Masks are blended into a copy of the image already shrunk to its size on screen, and matplotlib shows
    that one array pixel for pixel: half the drawing time of stacking a transparent overlay on the photo.
    Data coordinates stay those of the full image (x right, y down, pixel centres at integers).
    """

    def __init__(self, image: np.ndarray, display_width: int) -> None:
        height, width = image.shape[:2]
        self.figure, self.canvas = interactive_figure(display_width, round(height * display_width / width))
        self.canvas.toolbar_visible = False  # pan/zoom modes would swallow the clicks
        self.canvas.header_visible = False
        self.canvas.footer_visible = False
        self.canvas.resizable = False
        self.axes = self.figure.add_axes((0, 0, 1, 1))
        self.axes.set_axis_off()
        self.display_width = display_width
        self.artist = None
        self.set_image(image)

    def set_image(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        shown_width = min(width, self.display_width)  # never upsample: matplotlib enlarges with "nearest"
        shown_height = max(1, round(height * shown_width / width))
        self.rows = ((np.arange(shown_height) + 0.5) * height / shown_height).astype(int)  # full-image row of each shown row
        self.cols = ((np.arange(shown_width) + 0.5) * width / shown_width).astype(int)
        small = image if shown_width == width else np.asarray(Image.fromarray(image).resize((shown_width, shown_height), Image.LANCZOS))
        self.photo = small.astype(np.float32)
        extent = (-0.5, width - 0.5, height - 0.5, -0.5)
        if self.artist is None:
            self.artist = self.axes.imshow(small, interpolation="nearest", extent=extent)
        else:
            self.artist.set_data(small)
            self.artist.set_extent(extent)
        self.axes.set_xlim(-0.5, width - 0.5)
        self.axes.set_ylim(height - 0.5, -0.5)

    def show(self, masks: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Blend each (mask (H, W) bool, colour (3,) uint8) into the image and redraw."""
        small = [(mask[self.rows][:, self.cols], color) for mask, color in masks]  # (h, w) on screen
        self.artist.set_data(blend(self.photo, small, outline=OUTLINE_PX))
        self.canvas.draw_idle()


class WidgetBase:
    """Error reporting and display shared by both widgets: ``self.widget`` is what the notebook shows."""

    widget = None
    status = None
    _status_text = ""
    last_error: Optional[BaseException] = None  # the last error shown in the status line, and its traceback
    last_traceback: Optional[str] = None

    closed = False  # set by close(); a closed widget shows as one line of text

    def _repr_mimebundle_(self, **kwargs):
        if self.closed:  # ipywidgets would fail with a TypeError: the widget's comm is gone
            return {"text/plain": f"{self!r}, closed: what it holds can still be read; make a new one to show it"}
        bundle = self.widget._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = repr(self)  # short and stable, instead of every child widget's state
        return bundle

    def __repr__(self) -> str:
        height, width = self.image.shape[:2]
        return f"{type(self).__name__}(image {width}×{height})"

    def close(self) -> None:
        """Close every widget this one is made of (with their layouts and styles), freeing them in the kernel
        and in the notebook's saved widget state. A closed widget cannot be shown again."""
        import ipywidgets as w

        seen = set()

        def close_tree(widget):
            if id(widget) in seen:
                return
            seen.add(id(widget))
            for name in widget.keys:
                value = getattr(widget, name, None)
                for item in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(item, w.Widget):
                        close_tree(item)
            widget.close()

        for widget in [self.widget, *getattr(self, "_thumbnail_widgets", [])]:
            close_tree(widget)
        self.closed = True

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return self._status_text

    def _set_status(self, text: str, error: bool = False) -> None:
        self._status_text = text
        color = "#b00020" if error else "inherit"
        self.status.value = f'<span style="color:{color}">{escape(text)}</span>'

    def _reported(self, callback: Callable) -> Callable:
        """Wrap a UI callback so an exception is shown in the status line instead of lost in a log."""

        @functools.wraps(callback)
        def run(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - every error must reach the learner
                self.last_error = error
                self.last_traceback = traceback.format_exc()
                self._set_status(f"Error: {type(error).__name__}: {error}", error=True)

        return run
