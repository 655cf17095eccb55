"""The dtype policy: what lets a model converted to bfloat16 (or float16) run, and stay accurate.

`model.to(torch.bfloat16)` converts every weight. The plain model then fails on float32 inputs and would round
what must stay exact, so each subclass here adds one cast where it matters:
- images are cast where they enter the encoder (Sam.preprocess normalises float32 pixels in float32);
- positional codes are computed from float32 coordinates (in bfloat16 a coordinate would be rounded to 1/256
  of the image, 4 pixels at 1024) and then cast;
- LayerNorm2d takes its statistics in float32;
- prompt embeddings are cast to the model's dtype (mask logits fed back arrive in float32);
- mask logits leave the decoder in float32 (FastMaskDecoder).
In float32 every cast is a no-op, so these classes give the plain model's results.
"""

from __future__ import annotations

import math

import torch

from ..modeling.image_encoder import ImageEncoderViT
from ..modeling.layers import LayerNorm2d
from ..modeling.positional_encoding import PositionEmbeddingRandom
from ..modeling.prompt_encoder import PromptEncoder


class FastImageEncoderViT(ImageEncoderViT):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.patch_embed.proj.weight.dtype))


class FastLayerNorm2d(LayerNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)  # statistics in float32 (the weights promote to it)


class FastPositionEmbeddingRandom(PositionEmbeddingRandom):
    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        matrix = self.positional_encoding_gaussian_matrix
        coords = (2 * coords.float() - 1) @ matrix.float()  # (..., F), in float32
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).to(matrix.dtype)


class FastPromptEncoder(PromptEncoder):
    def forward(self, points, boxes, masks):
        dtype = self.no_mask_embed.weight.dtype
        if masks is not None:
            masks = masks.to(dtype)
        sparse, dense = super().forward(points, boxes, masks)
        return sparse.to(dtype), dense
