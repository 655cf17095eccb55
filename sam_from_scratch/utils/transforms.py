"""Moving images, prompts and masks between the user's frame and the model's frame.

SAM sees every image at one size: the longest side is resized to ``image_encoder.img_size`` (1024 for
the released models, 96 for our small one) keeping the aspect ratio, then the image is padded at the
bottom and right to a square (the padding happens in ``Sam.preprocess``). Prompts given in pixels of the
original image are scaled into the resized frame, and the masks the model predicts are mapped back:
upscaled to the square input, the padding cropped away, then resized to the original size.

``ResizeLongestSide`` has the same methods, arguments and results as the official class of that name,
so code written for one works with the other.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import check_int, input_error


class ResizeLongestSide:
    """Resize so that the longest side equals ``target_length``; scale coordinates and boxes to match.

    Numpy methods take single images and prompts as the user gives them; the ``*_torch`` methods take
    batched tensors.
    """

    def __init__(self, target_length: int) -> None:
        check_int("target_length", target_length, 1)
        self.target_length = target_length

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> Tuple[int, int]:
        """The (H, W) of an ``oldh`` x ``oldw`` image once its longest side is ``long_side_length``.

        Rounds half up, as the official transform does: a 333x517 image at 1024 becomes 660x1024.
        """
        _check_size("oldh, oldw", (oldh, oldw))
        check_int("long_side_length", long_side_length, 1)
        scale = long_side_length * 1.0 / max(oldh, oldw)
        newh = int(oldh * scale + 0.5)
        neww = int(oldw * scale + 0.5)
        return newh, neww

    # ---- images --------------------------------------------------------------------------------------

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """Resize an HxWxC uint8 image to new_h x new_w x C (bilinear, with Pillow's antialiasing).

        Uses Pillow's resize, the resampling the official predictor uses, so the model sees the same
        pixels as with the official code. Each channel is resampled on its own (for RGB this equals
        resizing the RGB picture in one go).
        """
        _check_image(image)
        newh, neww = self.resized_shape(image, image.shape[0], image.shape[1])
        channels = image[:, :, None] if image.ndim == 2 else image
        resized = [
            np.asarray(Image.fromarray(np.ascontiguousarray(channels[:, :, c])).resize((neww, newh), Image.BILINEAR))
            for c in range(channels.shape[2])
        ]
        out = np.stack(resized, axis=-1)  # (new_h, new_w, C)
        return out[:, :, 0] if image.ndim == 2 else out

    def apply_image_torch(self, image: torch.Tensor) -> torch.Tensor:
        """Resize a Bx3xHxW float batch to Bx3x new_h x new_w (bilinear, antialiased).

        Close to, but not bit-equal with, ``apply_image`` (Pillow rounds to uint8). The official version
        computes the target size from the batch and channel axes by mistake; this one uses H and W.
        """
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or not 1 <= image.shape[1] <= 4 or min(image.shape) < 1:
            hint = ""
            if isinstance(image, np.ndarray):
                hint = "For a numpy (H, W, C) image use apply_image."
            elif isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[-1] <= 4 < image.shape[1]:
                hint = "It looks channels-last: use .permute(0, 3, 1, 2)."
            elif isinstance(image, torch.Tensor) and image.ndim == 3:
                hint = "For one image add the batch axis: image[None]."
            raise input_error("image", "a tensor of shape (B, C, H, W) with at most 4 channels", image, hint)
        if not (image.is_floating_point() or image.dtype == torch.uint8):
            raise input_error("image", "a floating-point (or uint8) tensor", image)
        newh, neww = self.resized_shape(image, image.shape[-2], image.shape[-1])
        if image.device.type == "cpu" and image.dtype in (torch.float16, torch.bfloat16):
            # torch's antialiased resize on a CPU takes neither: resized in float32, given back in the caller's dtype
            resized = F.interpolate(image.float(), (newh, neww), mode="bilinear", align_corners=False, antialias=True)
            return resized.to(image.dtype)
        return F.interpolate(image, (newh, neww), mode="bilinear", align_corners=False, antialias=True)

    def resized_shape(self, image, h: int, w: int) -> Tuple[int, int]:
        """get_preprocess_shape of `image`'s (h, w), refusing (naming `image`) one so thin that resizing would
        leave it 0 pixels across. The predictor and the mask generator check images with it before any model work."""
        newh, neww = self.get_preprocess_shape(h, w, self.target_length)
        if min(newh, neww) == 0:
            raise input_error(
                "image", f"a long side at most {2 * self.target_length} times the short side (resized to a long side "
                f"of {self.target_length} pixels, this one would be 0 pixels {'high' if h < w else 'wide'})", image,
                "Pad it, or cut it into shorter pieces.",
            )
        return newh, neww

    # ---- coordinates and boxes -----------------------------------------------------------------------

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """Scale (..., 2) pixel coordinates (x, y) of an ``original_size`` = (H, W) image into the resized
        frame. Returns a new float64 array."""
        scale_x, scale_y = self._scales(original_size)
        coords = _as_numbers("coords", coords, 2, "(x, y) coordinates")  # a copy: the caller's array stays as it was
        coords[..., 0] = coords[..., 0] * scale_x
        coords[..., 1] = coords[..., 1] * scale_y
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, ...]) -> np.ndarray:
        """Scale Bx4 boxes (x1, y1, x2, y2) into the resized frame; returns Bx4 float64."""
        boxes = _as_numbers("boxes", boxes, 4, "boxes (x1, y1, x2, y2)")
        corners = self.apply_coords(boxes.reshape(-1, 2, 2), original_size)  # (B, 2 corners, xy)
        return corners.reshape(-1, 4)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: Tuple[int, ...]) -> torch.Tensor:
        """Torch version of ``apply_coords``: (..., 2) tensor in, new float32 tensor out."""
        _check_tensor("coords", coords, 2, "(x, y) coordinates", "apply_coords")
        scale_x, scale_y = self._scales(original_size)
        coords = coords.detach().clone().to(torch.float)
        coords[..., 0] = coords[..., 0] * scale_x
        coords[..., 1] = coords[..., 1] * scale_y
        return coords

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: Tuple[int, ...]) -> torch.Tensor:
        """Torch version of ``apply_boxes``: Bx4 tensor in, Bx4 float32 tensor out."""
        _check_tensor("boxes", boxes, 4, "boxes (x1, y1, x2, y2)", "apply_boxes")
        corners = self.apply_coords_torch(boxes.reshape(-1, 2, 2), original_size)  # (B, 2 corners, xy)
        return corners.reshape(-1, 4)

    def _scales(self, original_size: Sequence[int]) -> Tuple[float, float]:
        _check_size("original_size", original_size)
        old_h, old_w = (int(s) for s in original_size)
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        return new_w / old_w, new_h / old_h


def _check_size(argument: str, size) -> None:
    """An image size (H, W): two integers >= 1 (Python, numpy or 0-d tensors)."""
    try:
        numbers = len(size) == 2 and not any(isinstance(s, (bool, np.bool_)) for s in size)  # True is not a size
        pair = [int(s) for s in size] if numbers and all(float(s) == int(s) for s in size) else []
    except (TypeError, ValueError, OverflowError):  # not numbers, or inf
        pair = []
    if len(pair) != 2 or min(pair) < 1:
        raise input_error(argument, "an image size (H, W) of two integers >= 1", size)


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] > 4):
        hint = ""
        if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[0] <= 4:
            hint = "Channels first? Pass image.transpose(1, 2, 0)."
        elif isinstance(image, torch.Tensor):
            hint = "For a (B, 3, H, W) tensor use apply_image_torch."
        raise input_error("image", "a numpy array (H, W) or (H, W, C) with at most 4 channels", image, hint)
    if min(image.shape) < 1:
        raise input_error("image", "an image with at least one pixel (and one channel)", image)
    if image.dtype != np.uint8:
        raise input_error("image", "an array of dtype uint8", image, uint8_hint(image))


def uint8_hint(image: np.ndarray) -> str:
    """How to turn an image of numbers of another dtype into uint8 pixels, chosen from the range of its values."""
    if image.dtype.kind == "b":
        return "For a mask, use image.astype(np.uint8) * 255."
    if image.dtype.kind not in "iuf":
        return ""
    values = image[np.isfinite(image)] if image.dtype.kind == "f" else image
    if values.size == 0:
        return ""
    low, high = values.min().item(), values.max().item()
    if image.dtype.kind == "f" and low >= 0 and high <= 1:
        return "For floats in [0, 1] use (image * 255).round().astype(np.uint8)."
    if low >= 0 and high <= 255:
        rounded = ".round()" if image.dtype.kind == "f" else ""
        return f"Its values lie in 0..255: use image{rounded}.astype(np.uint8)."
    return f"Its values span {low:g}..{high:g}: scale them into 0..255 first."


def _as_numbers(argument: str, values, last: int, what: str) -> np.ndarray:
    """`values` as a new float64 array of shape (..., last), or a SamInputError naming `argument`."""
    if isinstance(values, torch.Tensor):
        raise input_error(argument, f"a numpy array (..., {last}) of {what}", values,
                          f"For tensors use apply_{argument}_torch.")
    try:
        array = np.array(values, dtype=float)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim == 0 or array.shape[-1] != last:
        raise input_error(argument, f"an array (..., {last}) of {what}", values)
    return array


def _check_tensor(argument: str, values, last: int, what: str, numpy_method: str) -> None:
    if not isinstance(values, torch.Tensor):
        hint = f"For numpy arrays use {numpy_method}." if isinstance(values, np.ndarray) else ""
        raise input_error(argument, f"a tensor (..., {last}) of {what}", values, hint)
    if values.ndim == 0 or values.shape[-1] != last or values.dtype == torch.bool or values.is_complex():
        raise input_error(argument, f"a tensor (..., {last}) of {what}", values)


def masks_to_original_size(
    masks: torch.Tensor,
    input_size: Tuple[int, int],
    original_size: Tuple[int, int],
    img_size: int,
) -> torch.Tensor:
    """Map BxCxhxw mask logits from the model back onto the original image: BxCxHxW.

    Three steps: upscale to the padded square input (img_size x img_size), crop the bottom/right
    padding away to ``input_size`` (the resized image, H, W), then resize to ``original_size`` (H, W).
    All resizing is bilinear on logits, so thresholding happens after, at full resolution.
    ``Sam.postprocess_masks`` calls this. Always in float32, also for a bfloat16/float16 model.
    """
    masks = masks.float()
    masks = _upscale_then_crop(masks, img_size, (int(input_size[0]), int(input_size[1])))  # (B, C, input_h, input_w)
    original_size = tuple(int(s) for s in original_size)
    if tuple(masks.shape[-2:]) == original_size:  # resizing to the same size is exactly the identity
        return masks.contiguous()
    return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)


def _upscale_then_crop(masks: torch.Tensor, img_size: int, input_size: Tuple[int, int]) -> torch.Tensor:
    """F.interpolate to (img_size, img_size), then [..., :input_h, :input_w], with the same values, computed
    only where the crop keeps them.

    Upscaling by an integer factor s, output row r reads input rows floor(max(0, (r + 0.5) / s - 0.5)) and the next,
    so the kept rows r < input_h need the first ceil(input_h / s) + 1 input rows only: upscaling just those
    by the same factor gives the kept rows the same weights, and values equal up to float rounding (within
    about 3e-7; bit for bit at many sizes), and skips the third of the work that a 3:2 photo's padding would
    cost. Other factors take the plain way.
    """
    low = masks.shape[-1]
    factor = img_size // low
    if masks.shape[-2] != low or factor * low != img_size:
        masks = F.interpolate(masks, (img_size, img_size), mode="bilinear", align_corners=False)
        return masks[..., : input_size[0], : input_size[1]]
    rows, cols = (min(low, -(-size // factor) + 1) for size in input_size)
    masks = F.interpolate(masks[..., :rows, :cols], scale_factor=float(factor), mode="bilinear", align_corners=False)
    return masks[..., : input_size[0], : input_size[1]]
