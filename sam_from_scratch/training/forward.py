"""SAM's forward pass with gradients, for many images and their prompts at once.

`Sam.forward` and the predictor take one image at a time and run without gradients; training and evaluation
need a batch of images, then many prompts spread over those images, decoded in one call.
"""

from __future__ import annotations

import torch

from ..modeling.sam import Sam, decode_prompts


def encode_images(model: Sam, images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 scenes at the model's input size -> image embeddings (B, C, h, w)."""
    x = images.to(model.pixel_mean.device).permute(0, 3, 1, 2).float()  # (B, H, W, 3) -> (B, 3, H, W)
    return model.image_encoder(model.preprocess(x))  # the scenes fill the input: preprocess only normalises


def decode(
    model: Sam,
    image_embeddings: torch.Tensor,
    image_index: torch.Tensor,
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    multimask_output: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of many images at once: prompt i belongs to image image_index[i].

    Shapes: image_embeddings (B, C, h, w); point_coords (N, K, 2), point_labels (N, K), boxes (N, 4),
    mask_input (N, 1, 4h, 4w). Returns low-res logits (N, M, 4h, 4w) and IoU predictions (N, M).
    The prompts may live on the CPU (where the random clicks are drawn): they move to the embeddings' device.
    """
    device = image_embeddings.device
    point_coords, point_labels, boxes, mask_input = (
        None if t is None else t.to(device) for t in (point_coords, point_labels, boxes, mask_input)
    )
    points = None if point_coords is None or point_coords.shape[1] == 0 else (point_coords, point_labels)
    # (N, C, h, w): one embedding per prompt
    return decode_prompts(model, image_embeddings[image_index.to(device)], points, boxes, mask_input, multimask_output)
