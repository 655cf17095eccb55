"""Checks of the tensors SAM takes from its users: a resized image, its original size, batched prompts.

``SamPredictor.set_torch_image`` / ``predict_torch`` and ``Sam.forward`` (the official batched call) take
the same kinds of tensors; these functions check them once for both, and a bad one becomes a
``SamInputError`` naming the argument (or the key of ``batched_input``), what was expected and what arrived.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import SamInputError, check_box_corners, check_switch, input_error, is_number
from .transforms import ResizeLongestSide

# Point labels of a prompt in tensors: 1 foreground, 0 background, and -1 for a padding point (so that prompts
# with fewer points can share a batch).
TORCH_LABELS = (-1, 0, 1)


def check_device(argument: str, value: torch.Tensor, device: torch.device) -> None:
    if value.device != device:
        raise SamInputError(
            f"{argument}: expected a tensor on the model's device {device}, got one on {value.device}. "
            f"Move it with .to({str(device)!r})."
        )


# Mask logits fed back as mask_input: the model's own lie within about +-100; from about 1e20 they overflow its
# float32 arithmetic (NaN masks and scores), and float16 holds nothing above 65504.
MASK_LOGIT_LIMIT = 1e4
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def check_finite(argument: str, value: torch.Tensor) -> None:
    """Finite numbers, also once in float32 (the model's dtype at most): a float64 1e300 is not."""
    if not value.is_floating_point():
        return
    ok = torch.isfinite(value)
    if value.dtype == torch.float64:
        ok &= value.abs() <= FLOAT32_MAX
    if not bool(ok.all()):
        in_float32 = " in float32" if value.dtype == torch.float64 else ""
        raise input_error(argument, f"finite numbers (no NaN or inf{in_float32})", value,
                          f"{int((~ok).sum())} value(s) are not finite{in_float32}.")


def check_mask_logits(argument: str, values) -> None:
    """Low-resolution mask logits (a numpy array or a tensor of numbers): finite, within +-MASK_LOGIT_LIMIT, and
    no mask among them made only of 0s and 1s (or 0s and 255s): a mask, not logits."""
    magnitude = values.abs() if isinstance(values, torch.Tensor) else np.abs(values)
    bad = ~(magnitude <= MASK_LOGIT_LIMIT)  # NaN too
    if bool(bad.any()):
        numbers = magnitude[bad]
        numbers = numbers[numbers == numbers]  # without the NaNs
        largest = f"the largest of size {float(numbers.max()):.3g}" if len(numbers) else "NaN"
        raise input_error(
            argument, f"mask logits within +-{MASK_LOGIT_LIMIT:g} (the model's own lie within about +-100)", values,
            f"{int(bad.sum())} value(s) are not: {largest}.",
        )
    # A mask of 0s and 1s (or 0s and 255s) in floats reads as logits of "unsure" and "a little sure": the model's
    # own logits are never only such values, so one of the masks given (batch first) being so is a mistake.
    count = values.size if isinstance(values, np.ndarray) else values.numel()
    if count == 0:
        return  # no mask (a batch of 0): the batch size's own check names it
    flat = values.reshape(values.shape[0], -1) if values.ndim > 2 else values.reshape(1, -1)  # (masks, pixels)
    for top in (1, 255):
        if bool((((flat == 0) | (flat == top)).all(1) & (flat == top).any(1)).any()):  # numpy and torch alike
            raise input_error(
                argument, "low-resolution mask logits", values,
                f"It holds only 0s and {top}s: a mask, not logits (logit 0 means 'unsure', not 'background'). "
                "Feed back a previous call's low_res_logits[i:i + 1].",
            )


def check_tensor(argument: str, value, shape: str, shape_ok, device: torch.device, floating: bool = False) -> None:
    """A tensor of real numbers (floating point if asked) whose shape passes `shape_ok`, on `device`."""
    kind = "a floating-point tensor" if floating else "a tensor"
    if not isinstance(value, torch.Tensor) or not shape_ok(tuple(value.shape)):
        hint = "Convert with torch.as_tensor(...)." if isinstance(value, np.ndarray) else ""
        raise input_error(argument, f"{kind} of shape {shape}", value, hint)
    real_numbers = value.dtype != torch.bool and not value.is_complex()
    if not (value.is_floating_point() if floating else real_numbers):
        raise input_error(argument, f"{kind} of shape {shape}", value)
    check_device(argument, value, device)


def check_resized_image(argument: str, image, img_size: int, device: torch.device, batch_axis: bool) -> None:
    """An image resized with ResizeLongestSide(img_size): (1, 3, h, w) with `batch_axis`, else (3, h, w);
    max(h, w) == img_size; numbers 0..255 on `device`."""
    layout = "(1, 3, h, w)" if batch_axis else "(3, h, w)"
    if not isinstance(image, torch.Tensor):
        hint = "Convert an (H, W, 3) array with torch.as_tensor(a).permute(2, 0, 1)." if isinstance(image, np.ndarray) else ""
        raise input_error(argument, f"a torch.Tensor of shape {layout}", image, hint)
    shape = tuple(image.shape)
    expected_start = (1, 3) if batch_axis else (3,)
    channels_first = shape[: len(expected_start)] == expected_start
    if len(shape) != len(expected_start) + 2 or not channels_first or max(shape[-2:]) != img_size or min(shape[-2:]) < 1:
        hint = "It looks channels-last: use .permute(2, 0, 1)." if not batch_axis and shape[-1:] == (3,) else ""
        raise input_error(
            argument,
            f"shape {layout} with max(h, w) == {img_size} (resize with ResizeLongestSide({img_size}))",
            image, hint,
        )
    if image.dtype == torch.bool or image.is_complex():
        raise input_error(argument, "numbers 0..255", image)
    check_device(argument, image, device)
    check_pixel_values(argument, image)


def check_pixel_values(argument: str, image: torch.Tensor) -> None:
    """Pixels on the 0..255 scale, as the model normalises them itself. Refused: values in [0, 1], values already
    normalised (around 0, a few units wide), and 16-bit values. A bicubic resize may overshoot 0..255 a little:
    that passes. Integer pixels must lie in 0..255 (uint8 always does)."""
    if image.dtype == torch.uint8:
        return
    if not image.is_floating_point():
        low, high = int(image.min()), int(image.max())
        if low < 0 or high > 255:
            hint = f"Its values reach {high}: 16-bit? Scale them to 0..255." if high > 255 else \
                f"Its values go down to {low}."
            raise input_error(argument, "values 0..255", image, hint)
        return
    if not bool(torch.isfinite(image).all()):
        raise input_error(argument, "finite values 0..255 (no NaN or inf)", image)
    low, high = float(image.min()), float(image.max())
    if high <= 1 and bool((image != image.round()).any()):
        raise input_error(argument, "values 0..255", image, f"Its values lie in [0, 1] (largest {high:.3g}): multiply by 255.")
    if low < 0 and high <= 10:
        raise input_error(
            argument, "values 0..255", image,
            f"Its values run from {low:.3g} to {high:.3g}, as if normalised already: pass the pixels before any "
            "normalisation (the model subtracts its own pixel_mean and divides by pixel_std).",
        )
    if high > 512:
        raise input_error(argument, "values 0..255", image, f"Its values reach {high:.5g}: 16-bit? Scale them to 0..255.")


def size_pair(argument: str, value, what: str = "(H, W), two positive integers", hint: str = "") -> Tuple[int, int]:
    """Two positive integers (a tuple, list, torch.Size or 1-D array / tensor) as a tuple of ints."""
    sizes = value
    if isinstance(sizes, (np.ndarray, torch.Tensor)):
        sizes = sizes.tolist() if sizes.ndim == 1 else None
    if (
        not isinstance(sizes, (tuple, list, torch.Size))
        or len(sizes) != 2
        or not all(is_number(s) and math.isfinite(s) and int(s) == s and s > 0
                   for s in sizes)
    ):
        if not hint and isinstance(sizes, (tuple, list, torch.Size)) and len(sizes) == 3:
            hint = "For an image array: image.shape[:2]."
        raise input_error(argument, what, value, hint)
    return int(sizes[0]), int(sizes[1])


def check_path(argument: str, value, expected: str, optional: bool = False) -> None:
    """`value` must be a path: a str that is not empty, or an os.PathLike (or None, where `optional`)."""
    if optional and value is None:
        return
    if not isinstance(value, (str, os.PathLike)) or str(value) == "":
        raise input_error(argument, expected, value)


def resizes_to(original_size: Sequence[int], input_size: Sequence[int], img_size: int) -> bool:
    """Whether an image of `original_size` (H, W) resized with ResizeLongestSide(img_size) is `input_size`, give or
    take a pixel (another resizer may round the other way). A square `input_size` of img_size may come from any
    picture, stretched."""
    if tuple(input_size) == (img_size, img_size):
        return True
    resized = ResizeLongestSide.get_preprocess_shape(*original_size, img_size)
    return all(abs(a - b) <= 1 for a, b in zip(resized, input_size))


def check_original_size(argument: str, value, input_size: Sequence[int], img_size: int) -> Tuple[int, int]:
    """(H, W), two positive integers (a tuple, list, torch.Size or 1-D array) that resize to `input_size` (see
    resizes_to)."""
    H, W = size_pair(argument, value)
    if not resizes_to((H, W), input_size, img_size):
        resized = ResizeLongestSide.get_preprocess_shape(H, W, img_size)
        hint = " Is it (W, H)? Pass (H, W), image.shape[:2]." if resizes_to((W, H), input_size, img_size) else ""
        raise SamInputError(
            f"{argument}: expected the size of the image before ResizeLongestSide, got ({H}, {W}), "
            f"which resizes to {tuple(resized)}, not to the transformed image's {tuple(input_size)}.{hint}"
        )
    return H, W


def resized_frame(input_size: Sequence[int], original_size: Sequence[int], img_size: int) -> Tuple[int, int]:
    """(h, w) of the frame prompts live in: the resized image, or the size ResizeLongestSide.apply_coords maps the
    original image to where another resizer rounded the other way (a click on the last row stays inside)."""
    expected = ResizeLongestSide.get_preprocess_shape(*original_size, img_size)
    return max(int(input_size[0]), expected[0]), max(int(input_size[1]), expected[1])


# Prompts may overshoot the frame by float rounding (apply_coords maps x = W to new_w * (W / W)).
FRAME_TOLERANCE = 0.01


def check_prompts_in_frame(point_coords, point_labels, boxes, frame: Tuple[int, int], mapper: str,
                           names: Mapping[str, str]) -> None:
    """Points (but padding points, label -1) inside the resized frame (h, w), and boxes that overlap it: a prompt
    in the original image's pixels lands outside (for an image larger than the model's input) and would give
    a wrong mask without a word. `mapper` names the transform in the hint."""
    h, w = frame
    low, high_x, high_y = -FRAME_TOLERANCE, w + FRAME_TOLERANCE, h + FRAME_TOLERANCE
    where = f"(0 <= x <= {w}, 0 <= y <= {h}: the image as the model sees it)"
    if point_coords is not None:
        x, y = point_coords[..., 0], point_coords[..., 1]
        outside = ((x < low) | (x > high_x) | (y < low) | (y > high_y)) & (point_labels != -1)
        if bool(outside.any()):
            raise SamInputError(
                f"{names['point_coords']}: expected points (x, y) in the resized frame {where}, got "
                f"{int(outside.sum())} outside, e.g. {point_coords[outside][0].tolist()}. Are they in the original "
                f"image's pixels? Map them with {mapper}.apply_coords_torch(coords, original_size)."
            )
    if boxes is not None:
        corners = boxes.reshape(-1, 4)
        outside = (corners[:, 2] < low) | (corners[:, 3] < low) | (corners[:, 0] > high_x) | (corners[:, 1] > high_y)
        if bool(outside.any()):
            raise SamInputError(
                f"{names['boxes']}: expected boxes that overlap the resized frame {where}, got "
                f"{int(outside.sum())} outside it, e.g. {corners[outside][0].tolist()}. Are they in the original "
                f"image's pixels? Map them with {mapper}.apply_boxes_torch(boxes, original_size)."
            )


def check_torch_prompts(point_coords, point_labels, boxes, mask_input, device: torch.device,
                        low_res_size: Tuple[int, int], names: Optional[Mapping[str, str]] = None,
                        frame: Optional[Tuple[int, int]] = None, mapper: str = "predictor.transform") -> None:
    """Batched prompts: shapes, one batch size B >= 1 for every prompt given, finite values, known labels, box
    corners in order, the model's device; with `frame` (h, w), points inside the resized frame and boxes that
    overlap it (check_prompts_in_frame). `names` renames the arguments in messages (e.g. for batched_input's
    keys). Cheap enough for the automatic generator's loop."""
    names = {key: key for key in ("point_coords", "point_labels", "boxes", "mask_input")} | dict(names or {})
    batch_sizes = {}
    if point_coords is not None:
        check_tensor(names["point_coords"], point_coords, "(B, N, 2)",
                     lambda s: len(s) == 3 and s[1] >= 1 and s[2] == 2, device)
        check_finite(names["point_coords"], point_coords)
        expected_labels = tuple(point_coords.shape[:2])
        if not isinstance(point_labels, torch.Tensor) or tuple(point_labels.shape) != expected_labels:
            raise input_error(names["point_labels"], f"a tensor of shape {expected_labels}, one label per point",
                              point_labels)
        check_device(names["point_labels"], point_labels, device)
        if point_labels.dtype == torch.bool or point_labels.is_complex():
            raise input_error(names["point_labels"], "a tensor of numbers -1, 0 or 1", point_labels)
        if not bool(torch.isin(point_labels, torch.tensor(TORCH_LABELS, device=point_labels.device)).all()):
            raise input_error(
                names["point_labels"],
                "values in {-1, 0, 1} (1 = foreground, 0 = background, -1 = padding in a prompt with fewer points)",
                point_labels.tolist() if point_labels.numel() <= 20 else point_labels,
            )
        batch_sizes[names["point_coords"]] = point_coords.shape[0]
    elif point_labels is not None:
        raise input_error(names["point_coords"], "a tensor of shape (B, N, 2) because point_labels was given",
                          point_coords)
    if boxes is not None:
        check_tensor(names["boxes"], boxes, "(B, 4)",
                     lambda s: len(s) in (2, 3) and s[-1] == 4 and (len(s) == 2 or s[1] == 1), device)
        check_finite(names["boxes"], boxes)
        corners = boxes.reshape(-1, 4)
        wrong = ((corners[:, 2] < corners[:, 0]) | (corners[:, 3] < corners[:, 1])).nonzero().flatten()
        if len(wrong):
            row = int(wrong[0])
            check_box_corners(f"{names['boxes']}[{row}]", corners[row].tolist(), corners[row].tolist())
        batch_sizes[names["boxes"]] = boxes.shape[0]
    if mask_input is not None:
        h, w = low_res_size
        check_tensor(names["mask_input"], mask_input, f"(B, 1, {h}, {w})", lambda s: s[1:] == (1, h, w), device,
                     floating=True)
        check_mask_logits(names["mask_input"], mask_input)
        batch_sizes[names["mask_input"]] = mask_input.shape[0]

    for name, size in batch_sizes.items():
        if size == 0:
            raise SamInputError(f"{name}: expected at least one prompt (B >= 1), got a batch of 0.")
    if len(set(batch_sizes.values())) > 1:
        given = ", ".join(f"{name} B={size}" for name, size in batch_sizes.items())
        raise SamInputError(
            f"{', '.join(batch_sizes)}: expected the same batch size B (one entry per prompt), got {given}."
        )
    if frame is not None:
        check_prompts_in_frame(point_coords, point_labels, boxes, frame, mapper, names)


BATCHED_INPUT_KEYS = ("image", "original_size", "point_coords", "point_labels", "boxes", "mask_inputs")
PROMPT_KEYS = ("point_coords", "point_labels", "boxes", "mask_inputs")
# Prompt-like keys a user may write for one of them; the model would ignore them without a word. A near-miss of
# a key (difflib) is caught too; other keys (an 'image_id', ground truth) are the user's and pass.
LIKELY_MEANT = {"box": "boxes", "bbox": "boxes", "points": "point_coords", "point": "point_coords",
                "coords": "point_coords", "labels": "point_labels", "label": "point_labels",
                "mask": "mask_inputs", "masks": "mask_inputs", "mask_input": "mask_inputs",
                "input_points": "point_coords", "input_labels": "point_labels", "input_boxes": "boxes"}
HUGGING_FACE_KEYS = ("input_points", "input_labels", "input_boxes")


def check_record_keys(where: str, record: Mapping) -> None:
    """Refuse a key that looks like a prompt SAM does not read (`box`, Hugging Face's `input_points`, a typo)."""
    for key in sorted(set(record) - set(BATCHED_INPUT_KEYS), key=str):  # other keys (ids, labels) are the user's
        near = [LIKELY_MEANT[key]] if key in LIKELY_MEANT else difflib.get_close_matches(str(key), BATCHED_INPUT_KEYS, 1, 0.8)
        if near:  # but a misspelt prompt would be ignored without a word
            hint = ""
            if key in HUGGING_FACE_KEYS:
                hint = (f" ({key!r} is the name in Hugging Face's SamModel; here prompts are tensors in the resized "
                        "frame: 'point_coords' (B, N, 2), 'point_labels' (B, N), 'boxes' (B, 4).)")
            raise SamInputError(
                f"{where}: got the key {key!r}, which SAM does not read; did you mean {near[0]!r}?{hint}"
            )


def check_batched_input(batched_input, multimask_output, img_size: int, device: torch.device,
                        low_res_size: Tuple[int, int]) -> None:
    """Sam.forward's input: a non-empty list of dicts, each with a resized 'image' (3, h, w), its
    'original_size' (H, W), and optional prompts in the resized frame (a prompt given as None counts as absent);
    `multimask_output` True or False."""
    check_switch("multimask_output", multimask_output)
    if not isinstance(batched_input, (list, tuple)) or not batched_input:
        raise input_error("batched_input", "a non-empty list of dicts, one per image", batched_input,
                          "Wrap a single image's dict in a list: [record]." if isinstance(batched_input, Mapping) else "")
    for i, record in enumerate(batched_input):
        where = f"batched_input[{i}]"
        if not isinstance(record, Mapping):
            raise input_error(where, "a dict with 'image' and 'original_size'", record)
        check_record_keys(where, record)
        for key in ("image", "original_size"):
            if key not in record:
                raise SamInputError(f"{where}: expected the key {key!r}, got keys {sorted(record)}.")
        image = record["image"]
        check_resized_image(f"{where}['image']", image, img_size, device, batch_axis=False)
        original_size = check_original_size(f"{where}['original_size']", record["original_size"], image.shape[-2:],
                                            img_size)
        names = {key: f"{where}[{key!r}]" for key in ("point_coords", "point_labels", "boxes")}
        names["mask_input"] = f"{where}['mask_inputs']"
        check_torch_prompts(record.get("point_coords"), record.get("point_labels"), record.get("boxes"),
                            record.get("mask_inputs"), device, low_res_size, names,
                            frame=resized_frame(image.shape[-2:], original_size, img_size),
                            mapper=f"ResizeLongestSide({img_size})")


def float_dtype(module: torch.nn.Module, default: Optional[torch.dtype] = torch.float32) -> Optional[torch.dtype]:
    """The dtype of a module's first floating-point parameter (`default` if it has none)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), default)


def pixels_dtype(model) -> torch.dtype:
    """The dtype a floating image enters Sam.preprocess in: float32, or the image encoder's dtype where wider.
    A float64 image would otherwise reach the float32 encoder (plain model: "Input type (double) and bias type
    (float) should be the same"); a bfloat16 model normalises float32 pixels in float32 and its fast encoder casts
    them where they enter (sam_from_scratch/fast/precision.py)."""
    return torch.promote_types(torch.float32, float_dtype(model.image_encoder))


def mask_input_dtype(model) -> torch.dtype:
    """The dtype of the prompt encoder's mask convolutions (float32 unless the model was converted)."""
    downscaling = getattr(model.prompt_encoder, "mask_downscaling", None)
    return float_dtype(downscaling) if downscaling is not None else torch.float32


def as_model_input(batched_input, model) -> list:
    """Sam.forward's records (checked by check_batched_input) as the model reads them, in new dicts (the user's
    are left as they are): a prompt given as None left out, as if its key were absent; a floating 'image' in
    pixels_dtype(model) and 'mask_inputs' in the prompt encoder's dtype, as predict_torch converts mask_input."""
    image_dtype, mask_dtype = pixels_dtype(model), mask_input_dtype(model)
    records = []
    for record in batched_input:
        record = {key: value for key, value in record.items() if not (key in PROMPT_KEYS and value is None)}
        if record["image"].is_floating_point():
            record["image"] = record["image"].to(image_dtype)
        if "mask_inputs" in record:
            record["mask_inputs"] = record["mask_inputs"].to(mask_dtype)
        records.append(record)
    return records


def check_image_to_preprocess(image, img_size: int, device: torch.device) -> None:
    """Sam.preprocess's input: (3, h, w) or (B, 3, h, w) with 1 <= h, w <= img_size (it pads to img_size; a larger
    image would be cropped without a word), numbers on `device`."""
    if not isinstance(image, torch.Tensor):
        hint = ""
        if isinstance(image, np.ndarray):
            hint = "Convert an (H, W, 3) array with torch.as_tensor(a).permute(2, 0, 1)."
        raise input_error("x", "a torch.Tensor of shape (3, h, w) or (B, 3, h, w)", image, hint)
    shape = tuple(image.shape)
    if image.ndim not in (3, 4) or shape[-3] != 3 or not (1 <= min(shape[-2:]) and max(shape[-2:]) <= img_size):
        hint = ""
        if image.ndim in (3, 4) and shape[-1] == 3 and shape[-3] != 3:
            hint = "It looks channels-last: use .permute(2, 0, 1) (.permute(0, 3, 1, 2) for a batch)."
        elif image.ndim in (3, 4) and shape[-3] == 3 and max(shape[-2:]) > img_size:
            hint = f"Resize it first: ResizeLongestSide({img_size}).apply_image_torch(x), or apply_image for an array."
        raise input_error("x", f"shape (3, h, w) or (B, 3, h, w) with h, w <= {img_size} (it is padded to "
                               f"{img_size} x {img_size})", image, hint)
    if image.dtype == torch.bool or image.is_complex():
        raise input_error("x", "numbers 0..255", image)
    check_device("x", image, device)
    if not image.is_floating_point():  # integers out of 0..255 (16-bit pixels); floats are the caller's to scale
        check_pixel_values("x", image)


def check_postprocess_sizes(masks, input_size, original_size, img_size: int) -> None:
    """Sam.postprocess_masks's input: logits (B, C, h, w); input_size (h, w) of the resized image before padding
    (max == img_size); original_size (H, W) that resizes to input_size (resizes_to). A swapped or unresized size
    would give wrong masks without a word. Pure Python on a few numbers: cheap enough for every click."""
    if not isinstance(masks, torch.Tensor) or masks.ndim != 4 or min(masks.shape[-2:], default=0) < 1:
        hint = "Convert with torch.as_tensor(...)." if isinstance(masks, np.ndarray) else ""
        if isinstance(masks, torch.Tensor) and masks.ndim in (2, 3):
            hint = "Add the missing axes: masks[None] for (C, h, w), masks[None, None] for (h, w)."
        raise input_error("masks", "a tensor of mask logits of shape (B, C, h, w)", masks, hint)
    if not masks.is_floating_point():
        raise input_error("masks", "floating-point mask logits (B, C, h, w)", masks,
                          "Pass the model's logits (low_res_logits), not thresholded masks.")
    wanted = f"(h, w), two positive integers with max(h, w) == {img_size} (the resized image's size, before padding)"
    three = isinstance(input_size, (tuple, list, torch.Size)) and len(input_size) == 3
    h, w = size_pair("input_size", input_size, wanted, "For a (3, h, w) image: image.shape[-2:]." if three else "")
    if max(h, w) != img_size:
        hint = ""
        if isinstance(original_size, (tuple, list, torch.Size)) and tuple(original_size) == tuple(input_size):
            hint = (f"It equals original_size: pass the resized image's size, e.g. image.shape[-2:] after "
                    f"ResizeLongestSide({img_size}).")
        raise input_error("input_size", wanted, input_size, hint)
    H, W = size_pair("original_size", original_size)
    if not resizes_to((H, W), (h, w), img_size):
        expected = ResizeLongestSide.get_preprocess_shape(H, W, img_size)
        swapped = resizes_to((H, W), (w, h), img_size) or resizes_to((W, H), (h, w), img_size)
        hint = " (H, W), not (W, H)?" if swapped else ""
        raise SamInputError(
            f"input_size: expected the size of original_size ({H}, {W}) resized with ResizeLongestSide({img_size}), "
            f"{tuple(expected)}, got ({h}, {w}).{hint}"
        )
