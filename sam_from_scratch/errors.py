"""Small helpers that turn bad input into one clear sentence.

Every public entry point checks its arguments with these, so a learner sees
"point_labels: expected values in {0, 1} (1 = foreground, 0 = background), got list [1, 2]." instead of a
traceback from deep inside torch.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable


class SamInputError(ValueError):
    """A public argument has the wrong type, shape or value."""


def describe(value) -> str:
    """A short description of what arrived: type, and shape/dtype for arrays and tensors."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {dtype}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def input_error(argument: str, expected: str, value, hint: str = "") -> SamInputError:
    """Build the error: '<argument>: expected <expected>, got <what arrived>. <hint>'."""
    message = f"{argument}: expected {expected}, got {describe(value)}."
    if hint:
        message += " " + hint
    return SamInputError(message)


def check_choice(argument: str, value, choices: Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise SamInputError(f"{argument}: expected one of {', '.join(map(repr, choices))}, got {value!r}.")


def renamed(error: SamInputError, names: dict[str, str]) -> SamInputError:
    """`error` naming the caller's argument (a value of `names`) where it names the callee's (its key), e.g.
    {"name": "model"} when a function passes its `model` on as from_pretrained's `name`; else `error` itself."""
    message = str(error)
    for theirs, ours in names.items():
        if message.startswith(theirs + ": "):
            return SamInputError(ours + message[len(theirs):])
    return error


def check_box_corners(argument: str, corners, shown) -> None:
    """A box is two corners [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2; `shown` is the box as the user wrote it."""
    x1, y1, x2, y2 = corners
    if x2 < x1 or y2 < y1:
        raise SamInputError(
            f"{argument}: expected x1 <= x2 and y1 <= y2 (corners [x1, y1, x2, y2]), got {shown}. "
            "Is it [x, y, width, height]? Then pass [x, y, x + width, y + height]."
        )


def is_number(value) -> bool:
    """A plain number (int, float, or their numpy kinds, which register as numbers.Real), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_int(value) -> bool:
    """An integer (int or a numpy integer, which register as numbers.Integral), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_int(argument: str, value, minimum: int) -> None:
    """`value` must be an integer (Python or numpy, not a bool) at least `minimum`."""
    if not is_int(value) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise input_error(argument, wanted, value)


def check_number(argument: str, value, low: float, high: float = math.inf, high_open: bool = False) -> None:
    """`value` must be a finite number in [low, high] (or [low, high) with `high_open`)."""
    below_high = is_number(value) and (value < high if high_open else value <= high)
    in_range = below_high and math.isfinite(value) and low <= value
    if not in_range:
        if high == math.inf:
            wanted = f"a finite number >= {low:g}"
        else:
            wanted = f"a number in [{low:g}, {high:g}{')' if high_open else ']'}"
        raise input_error(argument, wanted, value)


def check_switch(argument: str, value) -> None:
    """A yes/no argument: a bool (numpy's too) or 0/1, never a string such as "False", which would count as True."""
    import numpy as np  # here: the command line's --help reads this module without numpy

    if not (isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1))):
        raise input_error(argument, "True or False", value)


def expand_user(argument: str, value, expected: str, hint: str = " Write the path out in full."):
    """`value` as a Path with a leading ~ or ~user expanded, as a shell would; a SamInputError naming `argument`
    where the ~ names no home folder here (pathlib's own error is a RuntimeError)."""
    from pathlib import Path

    try:
        return Path(value).expanduser()
    except RuntimeError:  # "Could not determine home directory": ~user of no user, or no $HOME
        raise SamInputError(f"{argument}: expected {expected}, got {str(value)!r}, whose {Path(value).parts[0]} "
                            f"names no home folder here.{hint}") from None


def nearest_existing(path):
    """The longest leading part of the Path `path` that exists (`path` itself if it does): the folder a missing
    one would be created in, or the file that stands in the way of creating it."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
