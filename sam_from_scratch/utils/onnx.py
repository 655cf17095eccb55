"""The prompt side of SAM as one graph for ONNX: the official `SamOnnxModel`, with the same inputs and outputs.

The image encoder runs once per image, anywhere (a server, a notebook); its embedding is then shipped with
a small ONNX file that turns clicks into masks in milliseconds, e.g. in a browser with onnxruntime-web.

Inputs (float32, batch of one prompt set):
    image_embeddings (1, C, h, w)   the image encoder's output
    point_coords     (1, N, 2)      x, y in the resized image's pixels (ResizeLongestSide.apply_coords)
    point_labels     (1, N)         1 positive, 0 negative, 2 / 3 box corners, -1 padding point
    mask_input       (1, 1, 4h, 4w) low-resolution logits of an earlier answer, or zeros
    has_mask_input   (1,)           1 when mask_input is used, else 0
    orig_im_size     (2,)           the original image's (H, W)
Outputs: masks (1, M, H, W) logits, iou_predictions (1, M), low_res_masks (1, M, 4h, 4w); M is 1 with
return_single_mask, else 4 (the single-mask output first, then the three ambiguity outputs).

Like the official file, a click is sent with a padding point (label -1) after it unless a box is given: the
graph has no "pad?" branch. No input decides the graph's control flow (the number of points is a dimension,
the mask is switched on by multiplying with has_mask_input), which is what lets torch.export trace it: the
output's size is read from orig_im_size's *values*, and is the one data-dependent size, declared with
torch._check so that the exporter needs no guess about it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.sam import Sam
from .amg import calculate_stability_score

# A number far larger than any IoU prediction: adding it to one score decides an argmax without a branch.
_DECIDING_WEIGHT = 1000.0


class SamOnnxModel(nn.Module):
    """Prompt encoder + mask decoder + resizing to the original image, written for tracing.

    Args:
        model: a Sam (plain or sped up); its weights are shared, not copied.
        return_single_mask: return one mask: the best of the three ambiguity masks for a single click (or a
            box alone, which counts two points like a click), the single-mask output for three points or more.
        use_stability_score: report each mask's stability score (see utils.amg) instead of its predicted IoU.
        return_extra_metrics: also return stability scores and areas of the full-size masks, as
            (masks, scores, stability_scores, areas, low_res_masks).
    """

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.mask_decoder = model.mask_decoder
        self.img_size = model.image_encoder.img_size
        self.return_single_mask = return_single_mask
        self.use_stability_score = use_stability_score
        self.return_extra_metrics = return_extra_metrics
        self.stability_score_offset = 1.0

    @staticmethod
    def resize_longest_image_size(input_image_size: torch.Tensor, longest_side: int) -> torch.Tensor:
        """(H, W) as a tensor -> the (h, w) of the image resized so that its longest side is `longest_side`.

        ResizeLongestSide.get_preprocess_shape on tensors: rounded half up, int64.
        """
        size = input_image_size.to(torch.float32)
        return torch.floor(size * (longest_side / size.max()) + 0.5).to(torch.int64)

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """(1, N, 2) coordinates and (1, N) labels -> sparse prompt tokens (1, N, C)."""
        encoder = self.model.prompt_encoder
        code = encoder.pe_layer.forward_with_coords(point_coords + 0.5, encoder.input_image_size)  # pixel centres
        # One learned embedding per label -1, 0, 1, 2, 3; a one-hot product picks it without indexing, so a
        # label outside that range adds nothing instead of reading out of bounds.
        learned = torch.cat([encoder.not_a_point_embed.weight, *(e.weight for e in encoder.point_embeddings)])
        kinds = torch.arange(-1, len(encoder.point_embeddings), device=point_labels.device, dtype=point_labels.dtype)
        one_hot = (point_labels[..., None] == kinds).to(code.dtype)  # (1, N, 5)
        is_point = (point_labels[..., None] != -1).to(code.dtype)  # the padding point has no position
        return code * is_point + one_hot @ learned.to(code.dtype)

    def _embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """(1, 1, 4h, 4w) logits -> the dense prompt (1, C, h, w): the downscaled mask, or no_mask_embed."""
        encoder = self.model.prompt_encoder
        weight = encoder.no_mask_embed.weight
        from_mask = encoder.mask_downscaling(mask_input.to(weight.dtype))
        return has_mask_input * from_mask + (1 - has_mask_input) * weight.reshape(1, -1, 1, 1)

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-resolution logits (1, M, 4h, 4w) -> logits at the original size (1, M, H, W).

        The steps of Sam.postprocess_masks; the sizes come from a tensor, so they are read with .item(),
        which the exporter turns into symbols whose range torch._check states (a Python int() would have
        to know the value while tracing: the official file fails there). torch's older exporter
        (torch.onnx.export(..., dynamo=False), the default when the official notebook was written) traces
        instead, and would record .item()'s value as a constant: there the sizes stay tensors, so that
        orig_im_size stays an input.
        """
        masks = F.interpolate(masks.float(), (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        if torch.jit.is_tracing():
            input_size = self.resize_longest_image_size(orig_im_size, self.img_size)  # (2,) int64
            size = orig_im_size.to(torch.int64)
            masks = masks[..., : input_size[0], : input_size[1]]
            return F.interpolate(masks, (size[0], size[1]), mode="bilinear", align_corners=False)
        input_h, input_w = (s.item() for s in self.resize_longest_image_size(orig_im_size, self.img_size))
        height, width = (s.item() for s in orig_im_size.to(torch.int64))
        for size in (input_h, input_w):
            torch._check(size >= 1)
            torch._check(size <= self.img_size)
        for size in (height, width):
            torch._check(size >= 1)
        masks = masks[..., :input_h, :input_w]  # (1, M, input_h, input_w): the padding cut away
        return F.interpolate(masks, (height, width), mode="bilinear", align_corners=False)

    def select_masks(
        self, masks: torch.Tensor, iou_preds: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep one of the four outputs: (1, 4, ...) -> (1, 1, ...).

        A single click arrives as two points (with its padding point) and is ambiguous: the best of outputs
        1-3 by predicted IoU. Three points or more: output 0. A box alone is two points as well, so it gets the
        best of outputs 1-3 like a click (as in the official export). The point count is a graph
        dimension, so the choice is arithmetic on the scores rather than a branch.
        """
        bias = torch.zeros_like(iou_preds)
        bias[:, 0] = _DECIDING_WEIGHT * (num_points - 2.5)  # -500 for one click (two points with its padding), +500 for three points or more
        best = torch.argmax(iou_preds + bias, dim=1, keepdim=True)  # (1, 1)
        masks = torch.gather(masks, 1, best[:, :, None, None].expand(-1, -1, *masks.shape[2:]))
        return masks, torch.gather(iou_preds, 1, best)

    @torch.no_grad()
    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        orig_im_size: torch.Tensor,
    ):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res, scores = self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings.to(sparse.dtype),
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )  # (1, 4, 4h, 4w), (1, 4)
        low_res, scores = low_res.float(), scores.float()
        if self.use_stability_score:
            scores = calculate_stability_score(low_res, self.model.mask_threshold, self.stability_score_offset)
        if self.return_single_mask:
            low_res, scores = self.select_masks(low_res, scores, point_coords.shape[1])
        masks = self.mask_postprocessing(low_res, orig_im_size)
        if self.return_extra_metrics:
            stability = calculate_stability_score(masks, self.model.mask_threshold, self.stability_score_offset)
            areas = (masks > self.model.mask_threshold).sum(dim=(-2, -1))
            return masks, scores, stability, areas, low_res
        return masks, scores, low_res
