"""The prompt encoder: points, boxes and masks -> embeddings the mask decoder can read.

Sparse prompts (points, box corners) become tokens of size `embed_dim`: their positional code plus a
learned embedding saying what kind of point they are. Dense prompts (a low-resolution mask) become a
feature map the size of the image embedding, added to it in the decoder.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling.layers import LayerNorm2d
from ..modeling.positional_encoding import PositionEmbeddingRandom


class PromptEncoder(nn.Module):
    """Encodes prompts for SAM's mask decoder.

    Args:
        embed_dim: size of every prompt embedding (256 in the official models).
        image_embedding_size: (h, w) of the image encoder's output grid (64 x 64 for 1024 inputs).
        input_image_size: (H, W) of the padded model input (1024 x 1024).
        mask_in_chans: hidden channels of the mask downscaling stack.
        activation: activation class used in that stack.
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)

        # Four learned point types: 0 negative point, 1 positive point, 2 box top-left, 3 box bottom-right.
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList([nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)])
        # Used for the padding point that stands in for a missing box (label -1).
        self.not_a_point_embed = nn.Embedding(1, embed_dim)

        # A mask prompt arrives at 4x the embedding grid and is reduced 4x by two stride-2 convs.
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        # Used in place of a dense prompt when no mask is given.
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional code of every cell of the image embedding grid: (1, embed_dim, h, w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """points (B, N, 2) in input-image pixels, labels (B, N) -> (B, N [+1], embed_dim)."""
        points = points + 0.5  # a pixel's index names its corner; its centre is half a pixel further
        if pad:
            # With no box, one padding point (label -1) is appended, as in training.
            padding_point = torch.zeros((points.shape[0], 1, 2), device=points.device, dtype=points.dtype)
            padding_label = -torch.ones((labels.shape[0], 1), device=labels.device, dtype=labels.dtype)
            points = torch.cat([points, padding_point], dim=1)
            labels = torch.cat([labels, padding_label], dim=1)
        embedding = self.pe_layer.forward_with_coords(points, self.input_image_size)  # (B, N, embed_dim)
        labels = labels[..., None]  # (B, N, 1) broadcasts over channels
        # The padding point has no position: its code is replaced by `not_a_point_embed`.
        embedding = torch.where(labels == -1, self.not_a_point_embed.weight, embedding)
        embedding = embedding + (labels == 0) * self.point_embeddings[0].weight
        embedding = embedding + (labels == 1) * self.point_embeddings[1].weight
        return embedding

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes (B, 4) as x1, y1, x2, y2 -> two corner tokens (B, 2, embed_dim)."""
        boxes = boxes + 0.5
        corners = boxes.reshape(-1, 2, 2)  # (B, 2 corners, xy)
        embedding = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        top_left = embedding[:, 0, :] + self.point_embeddings[2].weight
        bottom_right = embedding[:, 1, :] + self.point_embeddings[3].weight
        return torch.stack([top_left, bottom_right], dim=1)

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks (B, 1, 4h, 4w) logits -> (B, embed_dim, h, w)."""
        return self.mask_downscaling(masks)

    def _get_batch_size(self, points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed any combination of prompts.

        Args:
            points: (coords (B, N, 2), labels (B, N)) with labels 1 positive, 0 negative, or None.
            boxes: (B, 4) or None.
            masks: (B, 1, 4h, 4w) low-resolution mask logits, or None.

        Returns:
            sparse embeddings (B, N_tokens, embed_dim) and dense embeddings (B, embed_dim, h, w).
        """
        bs = self._get_batch_size(points, boxes, masks)
        sparse = torch.empty((bs, 0, self.embed_dim), device=self.no_mask_embed.weight.device)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)

        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)  # (B, embed_dim, h, w)
        return sparse, dense
