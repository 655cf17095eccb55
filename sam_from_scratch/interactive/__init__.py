"""SAM in JupyterLab: click to segment, and the automatic mask generator with live thresholds.

    from sam_from_scratch.interactive import ClickSegmenter, AutomaticMaskExplorer

One module per piece: ``click_segmenter`` and ``explorer`` (the two widgets), ``canvas`` (the figure they
draw on), ``prompt_state`` (prompts and undo history, no user interface), ``drawing`` (colours, tints,
outlines, points and boxes; the command line draws its pictures with it too) and ``models`` (which model
to use when none is named).

The widgets need the course extras (matplotlib, ipywidgets, ipympl): ``pip install "sam-from-scratch[course]"``.
Without them, asking for a widget raises an ImportError that says so; the other pieces need only numpy and
Pillow, so they are imported here directly and the widgets on first use.
"""

from .drawing import blend, object_colors
from .prompt_state import PromptState

_WIDGETS = {
    "AutomaticMaskExplorer": "explorer",
    "ClickSegmenter": "click_segmenter",
    "interactive_figure": "canvas",
}

__all__ = ["AutomaticMaskExplorer", "ClickSegmenter", "PromptState", "blend", "interactive_figure", "object_colors"]


def __getattr__(name: str):
    if name in _WIDGETS:
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{_WIDGETS[name]}"), name)
        globals()[name] = value  # later look-ups find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
