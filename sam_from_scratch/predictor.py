"""SamPredictor: compute an image's embedding once, then ask for masks from many prompts.

The image encoder is by far the slow part of SAM (hundreds of times the cost of the decoder), so the
predictor runs it once in ``set_image`` and keeps the embedding; every ``predict`` call afterwards only
runs the prompt encoder and the mask decoder.

Same constructor, methods, arguments and return values as the official ``SamPredictor``. On top of it,
every public method checks its input and raises ``SamInputError`` (a ``ValueError``) that names the
argument, what was expected and what arrived. Conversions done for you, where the meaning is clear:

- a grayscale HxW (or HxWx1) image is repeated into three channels; an RGBA image loses its alpha;
- a (256, 256) ``mask_input`` (more generally the model's low-resolution size) gains its batch axis;
- a box of shape (1, 4) is accepted like one of shape (4,);
- point labels as a list, and mask logits as a tensor, as the official predictor takes them.

One argument more than the official one, ``dtype``: the precision of the image encoder. "auto" (the default)
runs it in bfloat16 where the hardware computes in it (a recent GPU, a CPU with AMX or AVX-512-BF16; see
``sam_from_scratch.device.auto_dtype``) and in the model's own precision elsewhere. The model itself is not
changed: the encoder runs under ``torch.autocast`` and the embedding comes back in the model's dtype.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Optional, Tuple

import numpy as np
import torch

from .device import resolve_dtype
from .errors import SamInputError, check_box_corners, check_choice, check_switch, input_error
from .fast.checks import OFFICIAL_NAMES
from .fast.decoder import FastMaskDecoder
from .fast.memory import keep_freed_memory
from .modeling.sam import Sam, decode_prompts  # Sam: importable from here, as from the official module
from .utils.checks import (FLOAT32_MAX, check_mask_logits, check_original_size, check_resized_image,
                           check_torch_prompts, float_dtype, mask_input_dtype, pixels_dtype, resized_frame)
from .utils.transforms import ResizeLongestSide, uint8_hint


def as_rgb_uint8(image, argument: str = "image") -> np.ndarray:
    """Check a user's image and return it as HxWx3 uint8.

    Accepts HxW or HxWx1 (grayscale, repeated to three channels), HxWx3, and HxWx4 (alpha dropped).
    Rejects, with a message saying how to fix it: non-arrays, other dtypes, other numbers of dimensions,
    channel-first (CxHxW) layouts, empty images and more than four channels.
    """
    if isinstance(image, np.matrix):  # a 2-D only subclass: a plain array first
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        hint = "Convert a PIL image with np.asarray(image.convert('RGB'))." if hasattr(image, "convert") else ""
        if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[-1] in (1, 3, 4):
            hint = "Use image.cpu().numpy() for an HxWxC tensor, or set_torch_image."
        elif isinstance(image, torch.Tensor):
            hint = "Use image.permute(1, 2, 0).cpu().numpy() for a CxHxW tensor, or set_torch_image."
        raise input_error(argument, "a numpy array of shape (H, W, 3) and dtype uint8", image, hint)
    if image.ndim not in (2, 3):
        raise input_error(argument, "an array with 2 (H, W) or 3 (H, W, C) dimensions", image)
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[2] > 4:
        raise input_error(
            argument, "channels last, (H, W, C)", image, "It looks channels-first: use image.transpose(1, 2, 0)."
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise input_error(argument, "an image with at least one pixel", image)
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels not in (1, 3, 4):
        raise input_error(argument, "1 (gray), 3 (RGB) or 4 (RGBA) channels in the last axis", image)
    if image.dtype != np.uint8:
        raise input_error(argument, "dtype uint8 with values 0..255", image, uint8_hint(image))
    if image.ndim == 2:
        image = image[:, :, None]
    if channels == 1:
        return np.repeat(image, 3, axis=2)
    return image[:, :, :3]


def check_sam_model(argument: str, model) -> None:
    """`model` must be a SAM model (ours, the official one, or anything with their parts), not a name or weights."""
    parts = ("image_encoder", "prompt_encoder", "mask_decoder")
    if all(hasattr(model, part) for part in parts) and hasattr(model.image_encoder, "img_size"):
        return
    hint = ""
    if isinstance(model, str):
        if model in OFFICIAL_NAMES:
            hint = f"Build it first: sam_model_registry[{model!r}](checkpoint=path), or from_pretrained({model!r})."
        else:
            hint = f"Build it first: from_pretrained({model!r}) reads a checkpoint file."
    elif isinstance(model, Mapping):
        hint = "That looks like a state dict: pass it as sam_model_registry['vit_b'](checkpoint=path) instead."
    elif hasattr(model, "model") and hasattr(model, "set_image"):
        hint = "That is a predictor: pass its model, predictor.model."
    raise input_error(
        argument, "a SAM model (e.g. sam_model_registry['vit_b'](checkpoint=path) or from_pretrained('tiny'))",
        model, hint,
    )


def _check_plain_precision(model) -> None:
    """The plain model computes in float32 only (its positional codes, LayerNorms and casts are the official
    ones); converted with .half() or .double() it would embed an image, then fail at the first click."""
    from .fast import DTYPES, is_fast

    dtype = float_dtype(model)
    if dtype != torch.float32 and not is_fast(model):
        fix = f"speed_up(model, {dtype}) from sam_from_scratch.fast, or model.float()" if dtype in DTYPES else "model.float()"
        raise SamInputError(
            f"sam_model: expected a model in float32, or one sped up for another precision (the plain model computes "
            f"in float32 only), got a plain model in {dtype}. Use {fix}."
        )


def _resizes_each_mask_alone(model) -> bool:
    """Whether model.postprocess_masks is this package's or Meta's, which resize each mask on its own to the
    original size (a subclass's own, or one set on the instance, may not)."""
    method = getattr(type(model), "postprocess_masks", None)
    return ("postprocess_masks" not in vars(model)
            and getattr(method, "__module__", "").startswith(("sam_from_scratch.", "segment_anything.")))


class SamPredictor:
    """Predict masks for one image from points, boxes and low-resolution mask prompts.

    Args:
        sam_model: a ``Sam`` (ours or the official one; only its public attributes are used).
        dtype: the image encoder's precision: "auto", "float32", "bfloat16", "float16" or a torch dtype
            (see the module docstring). A model converted to a lower precision runs in its own.

    On a CPU the predictor asks the C library's malloc to keep freed memory for the next tensors
    (sam_from_scratch.fast.memory; SAM_FROM_SCRATCH_KEEP_FREED_MEMORY=0 leaves malloc as it is).
    """

    def __init__(self, sam_model, dtype="auto") -> None:
        check_sam_model("sam_model", sam_model)
        _check_plain_precision(sam_model)
        resolve_dtype("dtype", dtype, "cpu")  # a bad value fails here, not at the first image
        self.model = sam_model
        self.requested_dtype = dtype
        self.transform = ResizeLongestSide(sam_model.image_encoder.img_size)
        self.reset_image()
        if self.device.type == "cpu":
            keep_freed_memory()  # freed tensors stay mapped for the next ones (fast/memory.py)

    # ---- the image ---------------------------------------------------------------------------------------

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute and keep the embedding of ``image``.

        Args:
            image: (H, W, 3) uint8 array, values 0..255. Also (H, W) or (H, W, 1) grayscale, repeated to
                three channels, and (H, W, 4) with alpha, which is dropped.
            image_format: "RGB" or "BGR" (OpenCV's order): the channel order of ``image``.
        """
        check_choice("image_format", image_format, ("RGB", "BGR"))
        image = as_rgb_uint8(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]  # reverse the channel order
        input_image = self.transform.apply_image(image)  # (h, w, 3), longest side = img_size
        input_image_torch = torch.as_tensor(input_image, device=self.device)
        input_image_torch = input_image_torch.permute(2, 0, 1).contiguous()[None]  # (1, 3, h, w)
        self.set_torch_image(input_image_torch, image.shape[:2])

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, ...]) -> None:
        """Compute and keep the embedding of an image already resized with ``ResizeLongestSide``.

        Args:
            transformed_image: (1, 3, h, w) tensor, values 0..255, with max(h, w) == img_size; floating pixels
                of another dtype (float64) are converted to float32 (the model's dtype where wider).
            original_image_size: (H, W) of the image before resizing; masks are returned at this size.
        """
        img_size = self.model.image_encoder.img_size
        check_resized_image("transformed_image", transformed_image, img_size, self.device, batch_axis=True)
        shape = tuple(transformed_image.shape)
        original_size = check_original_size("original_image_size", original_image_size, shape[2:], img_size)
        self.reset_image()
        self.original_size = original_size
        self.input_size = tuple(shape[-2:])
        if transformed_image.is_floating_point():  # float64 would stop the plain encoder's first convolution
            transformed_image = transformed_image.to(pixels_dtype(self.model))
        input_image = self.model.preprocess(transformed_image)  # (1, 3, img_size, img_size)
        with self._encoder_precision():
            features = self.model.image_encoder(input_image)  # (1, C, img_size / patch, img_size / patch)
        self.features = features.to(float_dtype(self.model.mask_decoder, features.dtype))  # the decoder's
        self.is_image_set = True

    @property
    def dtype(self) -> torch.dtype:
        """The precision the image encoder runs in, on the model's current device."""
        own = float_dtype(self.model.image_encoder)
        if own != torch.float32:  # converted by the user: it runs as it is
            return own
        return resolve_dtype("dtype", self.requested_dtype, self.device)

    def _encoder_precision(self):
        dtype = self.dtype
        if dtype == (float_dtype(self.model.image_encoder)):
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def get_image_embedding(self) -> torch.Tensor:
        """The embedding of the current image, (1, C, h, w): C=256 and h=w=64 for the official models."""
        self._require_image("get_image_embedding")
        return self.features

    @property
    def device(self) -> torch.device:
        return self.model.device

    def reset_image(self) -> None:
        """Forget the current image and its embedding."""
        self.is_image_set = False
        self.features = None
        self.original_size = None
        self.input_size = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None  # the official predictor's, never set

    # ---- prompts -----------------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        box: Optional[np.ndarray] = None,
        mask_input: Optional[np.ndarray] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one set of prompts on the current image, in the original image's pixels.

        Args:
            point_coords: (N, 2) array of points (x, y) in pixels, inside the image.
            point_labels: (N,) array, 1 for a foreground point, 0 for a background point.
            box: (4,) array (x1, y1, x2, y2) in pixels, overlapping the image; (1, 4) is accepted too.
            mask_input: (1, 256, 256) low-resolution logits, usually the best of a previous call's third
                output; (256, 256) gains its batch axis. (256 is 4x the embedding size; 48 for the tiny
                model.)
            multimask_output: three masks for an ambiguous prompt (a single click) instead of one.
            return_logits: return the logits instead of thresholded masks.

        Returns:
            masks (C, H, W) bool (float32 logits if ``return_logits``), C = 3 or 1;
            iou_predictions (C,) float32, the model's estimate of each mask's quality;
            low_res_logits (C, 256, 256) float32, to pass back as ``mask_input``.
        """
        self._require_image("predict")
        check_switch("multimask_output", multimask_output)
        check_switch("return_logits", return_logits)
        coords_torch = labels_torch = box_torch = mask_torch = None
        if point_coords is not None:
            coords, labels = self._check_points(point_coords, point_labels)
            coords = self.transform.apply_coords(coords, self.original_size)
            coords_torch = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]  # (1, N, 2)
            labels_torch = torch.as_tensor(labels, dtype=torch.int, device=self.device)[None]  # (1, N)
        elif point_labels is not None:
            raise input_error("point_coords", "an (N, 2) array because point_labels was given", point_coords)
        if box is not None:
            box = self.transform.apply_boxes(self._check_box(box), self.original_size)  # (1, 4)
            box_torch = torch.as_tensor(box, dtype=torch.float, device=self.device)[None]  # (1, 1, 4)
        if mask_input is not None:
            mask = self._check_mask_input(mask_input)  # (1, 256, 256)
            mask_torch = torch.as_tensor(mask, dtype=torch.float, device=self.device)[None]  # (1, 1, 256, 256)

        masks, iou_predictions, low_res_masks = self.predict_torch(
            coords_torch, labels_torch, box_torch, mask_torch, multimask_output, return_logits=return_logits
        )
        return (
            masks[0].detach().cpu().numpy(),
            iou_predictions[0].detach().cpu().numpy(),
            low_res_masks[0].detach().cpu().numpy(),
        )

    @torch.no_grad()
    def predict_torch(
        self,
        point_coords: Optional[torch.Tensor],
        point_labels: Optional[torch.Tensor],
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks for a batch of B prompts on the current image. Prompts must already be in the resized
        frame (``predictor.transform.apply_coords_torch`` / ``apply_boxes_torch``): a point outside it (but a
        padding point) or a box that misses it is refused, as prompts left in the original image's pixels. Such
        prompts that land inside the frame cannot be told from mapped ones (with Meta's 1024-pixel models, any
        image up to 1024 pixels on its long side): map them always.

        Args:
            point_coords: (B, N, 2) tensor of points (x, y), or None.
            point_labels: (B, N) tensor of 1 (foreground) / 0 (background), or -1 for a padding point that the
                model ignores (so prompts with fewer points can share the batch); or None.
            boxes: (B, 4) tensor (x1, y1, x2, y2), or None.
            mask_input: (B, 1, 256, 256) floating-point low-resolution logits (converted to the model's dtype),
                or None.
            multimask_output, return_logits: as in ``predict``.

        Every prompt given must have the same B >= 1, finite values and be on the model's device; otherwise
        ``SamInputError`` names the argument.

        Returns:
            masks (B, C, H, W), iou_predictions (B, C) and low_res_logits (B, C, 256, 256) tensors.
        """
        self._require_image("predict_torch")
        check_switch("multimask_output", multimask_output)
        check_switch("return_logits", return_logits)
        frame = resized_frame(self.input_size, self.original_size, self.model.image_encoder.img_size)
        check_torch_prompts(point_coords, point_labels, boxes, mask_input, self.device, self._low_res_size,
                            frame=frame)
        if mask_input is not None:
            mask_input = mask_input.to(mask_input_dtype(self.model))  # a float64 mask would stop the official Sam's conv
        prompts = (point_coords, point_labels, boxes, mask_input)
        B = next((len(p) for p in prompts if p is not None), 1)  # no prompt at all: the model's batch of 1
        step = self._prompts_per_chunk(B)
        if B <= step:
            return self._decode(*prompts, multimask_output, return_logits)
        outputs = None  # masks (B, C, H, W), iou_predictions (B, C), low_res_logits (B, C, 4h, 4w)
        for start in range(0, B, step):
            chunk = [None if p is None else p[start : start + step] for p in prompts]
            out = None if outputs is None or return_logits else outputs[0][start : start + step]
            results = self._decode(*chunk, multimask_output, return_logits, out=out)  # boolean masks written in out
            if outputs is None:
                outputs = [r.new_empty((B, *r.shape[1:])) for r in results]
            for output, result in zip(outputs, results):
                if result is not out:  # (the masks, when given out, are already in place)
                    output[start : start + len(result)] = result
        return tuple(outputs)

    # On a CPU, with the fast decoder, predict_torch decodes as many prompts at a time as keep one
    # (prompts, h*w, C) tensor of image tokens within cpu_chunk_bytes (a GPU, and any other decoder, take them
    # all at once: the official decoder then gives the official results bit for bit). Prompts share no work
    # beyond the image side, which the fast decoder keeps anyway; the chunks bound the memory that a large
    # batch would hold (about 20 such tensors a prompt, with the upscaling's). Measured on 2 cores, vit_b
    # ((4096, 256) tokens, 4 MiB a prompt), 64 prompts: 2.03 s one at a time, 1.58 s two at a time, 1.44 s
    # sixteen at a time, 1.41 s all at once; the small model's 64 prompts fit in one chunk.
    cpu_chunk_bytes: int = 2**26

    def _prompts_per_chunk(self, num_prompts: int) -> int:
        if self.device.type != "cpu" or not isinstance(self.model.mask_decoder, FastMaskDecoder):
            return num_prompts
        _, C, h, w = self.features.shape
        return max(1, self.cpu_chunk_bytes // (C * h * w * self.features.element_size()))

    def _decode(self, point_coords, point_labels, boxes, mask_input, multimask_output, return_logits, out=None):
        points = (point_coords, point_labels) if point_coords is not None else None
        low_res_masks, iou_predictions = decode_prompts(
            self.model, self.features, points, boxes, mask_input, multimask_output
        )  # (B, C, 4h, 4w), (B, C)
        # float32 whatever ran: a plain decoder under the caller's torch.autocast gives bfloat16, which numpy lacks
        low_res_masks, iou_predictions = low_res_masks.float(), iou_predictions.float()
        if return_logits:
            masks = self.model.postprocess_masks(low_res_masks, self.input_size, self.original_size)  # (B, C, H, W)
        else:
            masks = self._thresholded_masks(low_res_masks, out)
        return masks, iou_predictions, low_res_masks

    def _thresholded_masks(self, low_res_masks: torch.Tensor, out: Optional[torch.Tensor]) -> torch.Tensor:
        """postprocess_masks(low_res_masks) > mask_threshold, (B, C, H, W) booleans, written into `out` if given.
        On a CPU one mask at a time: a mask's logits at the image's size (4 MiB for 1024 x 1024) are compared
        while still in the cache, where a batch's would go out to memory and come back (64 prompts, 3 masks
        each, on 2 cores: 0.39 s -> 0.23 s), by numpy where it can: its comparison is vectorised, torch.gt's
        with a boolean output was not (a 1024 x 1024 mask on 2 cores: 0.32 ms, numpy 0.18 ms on one). A model's
        own postprocess_masks is called once, as written."""
        threshold, postprocess = self.model.mask_threshold, self.model.postprocess_masks
        if not _resizes_each_mask_alone(self.model):
            return postprocess(low_res_masks, self.input_size, self.original_size) > threshold
        B, C = low_res_masks.shape[:2]
        if out is None:
            out = torch.empty((B, C, *self.original_size), dtype=torch.bool, device=low_res_masks.device)
        if low_res_masks.device.type != "cpu":
            return torch.gt(postprocess(low_res_masks, self.input_size, self.original_size), threshold, out=out)
        low_res, masks = low_res_masks.flatten(0, 1)[:, None], out.view(B * C, 1, *out.shape[-2:])  # (B*C, 1, h, w)
        for i in range(B * C):
            logits = postprocess(low_res[i : i + 1], self.input_size, self.original_size)  # (1, 1, H, W)
            if logits.dtype == torch.float32 and not logits.requires_grad:
                # (the threshold in float32, as torch.gt compares float32 logits with a float64 number)
                np.greater(logits.numpy(), np.float32(threshold), out=masks[i : i + 1].numpy())
            else:
                torch.gt(logits, threshold, out=masks[i : i + 1])
        return out

    # ---- input checks ------------------------------------------------------------------------------------

    def _require_image(self, method: str) -> None:
        if not self.is_image_set:
            raise RuntimeError(f"{method}: no image is set. Call predictor.set_image(image) first.")

    @property
    def _low_res_size(self) -> Tuple[int, int]:
        """(4h, 4w): the size of the decoder's low-resolution logits and of mask prompts."""
        return tuple(self.model.prompt_encoder.mask_input_size)

    def _check_points(self, point_coords, point_labels) -> Tuple[np.ndarray, np.ndarray]:
        if not isinstance(point_coords, np.ndarray):
            raise input_error("point_coords", "a numpy array of shape (N, 2)", point_coords, "Wrap it: np.array(...).")
        if point_coords.ndim != 2 or point_coords.shape[1] != 2 or point_coords.shape[0] == 0:
            hint = "For one point use np.array([[x, y]])." if point_coords.shape == (2,) else ""
            raise input_error("point_coords", "shape (N, 2) with N >= 1, one (x, y) per row", point_coords, hint)
        if point_coords.dtype.kind not in "iuf":
            raise input_error("point_coords", "numbers (x, y) in pixels", point_coords)
        if not np.isfinite(point_coords).all():
            raise input_error("point_coords", "finite numbers (no NaN or inf)", point_coords.tolist())
        n = point_coords.shape[0]
        if point_labels is None:
            raise SamInputError(
                f"point_labels: expected an array of {n} labels (1 = foreground, 0 = background) "
                "because point_coords was given, got None."
            )
        if isinstance(point_labels, (list, tuple)):  # as the official predictor takes them
            point_labels = np.asarray(point_labels)
        if not isinstance(point_labels, np.ndarray):
            raise input_error("point_labels", f"a numpy array of shape ({n},)", point_labels, "Wrap it: np.array(...).")
        if point_labels.shape != (n,):
            raise input_error("point_labels", f"shape ({n},), one label per point in point_coords", point_labels)
        if not np.isin(point_labels, (0, 1)).all():
            raise input_error("point_labels", "values in {0, 1} (1 = foreground, 0 = background)", point_labels.tolist())
        H, W = self.original_size
        outside = ~((point_coords >= 0) & (point_coords <= (W, H))).all(axis=1)
        if outside.any():
            raise SamInputError(
                f"point_coords: expected points (x, y) inside the {W}x{H} image (0 <= x <= {W}, 0 <= y <= {H}), "
                f"got {int(outside.sum())} outside, e.g. {point_coords[outside][0].tolist()}. Are they (y, x)?"
            )
        return point_coords, point_labels

    def _check_box(self, box) -> np.ndarray:
        if not isinstance(box, np.ndarray):
            raise input_error("box", "a numpy array [x1, y1, x2, y2] of shape (4,)", box, "Wrap it: np.array(...).")
        if box.shape not in ((4,), (1, 4)) or box.dtype.kind not in "iuf":
            raise input_error("box", "4 numbers [x1, y1, x2, y2], shape (4,) or (1, 4)", box)
        if not (np.abs(box) <= FLOAT32_MAX).all():  # False for NaN and inf too
            raise input_error("box", "finite numbers (no NaN or inf in float32)", box.tolist())
        check_box_corners("box", box.reshape(4).tolist(), box.tolist())
        x1, y1, x2, y2 = box.reshape(4).tolist()
        H, W = self.original_size
        if x2 < 0 or y2 < 0 or x1 > W or y1 > H:
            raise SamInputError(
                f"box: expected a box that overlaps the {W}x{H} image, got {box.tolist()}, which lies outside it."
            )
        return box.reshape(1, 4)

    def _check_mask_input(self, mask_input) -> np.ndarray:
        h, w = self._low_res_size
        if isinstance(mask_input, torch.Tensor):  # e.g. a previous predict_torch's logits; the official takes them
            mask_input = mask_input.detach().cpu().numpy()
        if not isinstance(mask_input, np.ndarray):
            raise input_error("mask_input", f"a numpy array of shape (1, {h}, {w})", mask_input)
        if mask_input.shape == (h, w):
            mask_input = mask_input[None]  # (1, h, w)
        if mask_input.shape != (1, h, w):
            hint = ""
            if mask_input.ndim == 3 and mask_input.shape[1:] == (h, w):
                hint = "Pass one mask: the best of a previous call's low_res_logits[i:i + 1]."
            raise input_error("mask_input", f"shape (1, {h}, {w}) (low-resolution logits)", mask_input, hint)
        if mask_input.dtype.kind != "f":  # as predict_torch: a 0/1 or 0/255 mask would pass as logits
            hint = ("A mask is not logits: logit 0 means 'unsure', not 'background'. Feed back a previous call's "
                    "low_res_logits[i:i + 1]." if mask_input.dtype.kind in "biu" else "")
            raise input_error("mask_input", "floating-point low-resolution logits", mask_input, hint)
        check_mask_logits("mask_input", mask_input)
        return mask_input


__all__ = ["Sam", "SamPredictor", "as_rgb_uint8", "check_sam_model"]
