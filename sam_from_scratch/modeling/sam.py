"""Sam: the three parts joined, with the pre- and post-processing around them."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.image_encoder import ImageEncoderViT
from ..modeling.mask_decoder import MaskDecoder
from ..modeling.prompt_encoder import PromptEncoder
from ..utils.checks import as_model_input, check_batched_input, check_image_to_preprocess, check_postprocess_sizes
from ..utils.transforms import masks_to_original_size


class Sam(nn.Module):
    """Segment Anything: image encoder + prompt encoder + mask decoder.

    Args:
        image_encoder: turns a padded image into an embedding.
        prompt_encoder: turns points, boxes and masks into embeddings.
        mask_decoder: turns both into masks and predicted IoUs.
        pixel_mean, pixel_std: per-channel normalization of RGB images in 0..255.
    """

    mask_threshold: float = 0.0  # logits above this are "in the mask"
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: list[float] = [123.675, 116.28, 103.53],
        pixel_std: list[float] = [58.395, 57.12, 57.375],
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        # Not part of the checkpoint (persistent=False): they are constants of the recipe.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @torch.no_grad()
    def forward(self, batched_input: list[dict[str, Any]], multimask_output: bool) -> list[dict[str, torch.Tensor]]:
        """Segment a batch of images, each with its own prompts.

        Args:
            batched_input: one dict per image with
                'image': (3, H, W) tensor already resized so its longest side is image_encoder.img_size,
                'original_size': (H0, W0) before resizing,
                optional 'point_coords' (B, N, 2) and 'point_labels' (B, N) in the resized frame
                (map pixels with ResizeLongestSide(img_size).apply_coords_torch; label -1 marks a padding point),
                optional 'boxes' (B, 4) in the resized frame (apply_boxes_torch), optional 'mask_inputs'
                (B, 1, 4h, 4w). A prompt given as None counts as absent. Floating images and mask logits of
                another dtype (float64) are converted to the model's.
            multimask_output: three masks per prompt instead of one.

        Returns:
            one dict per image with 'masks' (B, C, H0, W0) bool, 'iou_predictions' (B, C) and
            'low_res_logits' (B, C, 4h, 4w).

        A bad input raises SamInputError naming it (e.g. "batched_input[0]['boxes']: expected ..."), also a point
        outside the resized image or a box that misses it (prompts left in the original image's pixels).
        """
        check_batched_input(batched_input, multimask_output, self.image_encoder.img_size, self.device,
                            tuple(self.prompt_encoder.mask_input_size))
        batched_input = as_model_input(batched_input, self)  # None prompts left out, floats in the model's dtype
        input_images = torch.stack([self.preprocess(record["image"]) for record in batched_input], dim=0)
        image_embeddings = self.image_encoder(input_images)  # (num_images, C, h, w)

        outputs = []
        for record, embedding in zip(batched_input, image_embeddings):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            low_res_masks, iou_predictions = decode_prompts(
                self, embedding.unsqueeze(0), points, record.get("boxes", None), record.get("mask_inputs", None),
                multimask_output,
            )
            masks = self.postprocess_masks(
                low_res_masks, input_size=record["image"].shape[-2:], original_size=record["original_size"]
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou_predictions,
                    "low_res_logits": low_res_masks,
                }
            )
        return outputs

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """Low-resolution logits (B, C, 4h, 4w) -> logits at the original image size (B, C, H0, W0).

        Upscale to the padded input, cut the padding away, then resize to the original size. input_size is
        the resized image's (h, w) before padding, original_size the (H, W) it was resized from.
        """
        check_postprocess_sizes(masks, input_size, original_size, self.image_encoder.img_size)
        return masks_to_original_size(masks, input_size, original_size, self.image_encoder.img_size)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize a (3, H, W) (or (B, 3, H, W)) image with values in 0..255, H, W <= img_size, and pad it
        bottom-right to a square."""
        check_image_to_preprocess(x, self.image_encoder.img_size, self.device)
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        size = self.image_encoder.img_size
        return F.pad(x, (0, size - w, 0, size - h))


def decode_prompts(
    model: nn.Module,
    image_embeddings: torch.Tensor,
    points: tuple[torch.Tensor, torch.Tensor] | None,
    boxes: torch.Tensor | None,
    masks: torch.Tensor | None,
    multimask_output: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> low-resolution mask logits (B, C, 4h, 4w) and predicted IoUs (B, C), for any SAM `model`.

    The prompt encoder turns points (coords (B, N, 2), labels (B, N)), boxes (B, 4) and mask logits
    (B, 1, 4h, 4w) into sparse and dense embeddings; the mask decoder reads them with the image embedding
    (1 or B, C, h, w): one embedding may serve all B prompts.
    """
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
    return model.mask_decoder(
        image_embeddings=image_embeddings,
        image_pe=model.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
    )
