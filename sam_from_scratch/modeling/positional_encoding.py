"""Random Fourier features: how SAM tells the decoder *where* things are.

A point (x, y) in [0, 1]^2 is mapped to [-1, 1]^2, projected by a fixed random Gaussian matrix
(2 x F) and wrapped through sin and cos, giving 2F numbers. Nearby points get similar codes, far
points dissimilar ones, at many spatial frequencies at once (Tancik et al., 2020).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random spatial frequencies.

    Args:
        num_pos_feats: F, the number of random frequencies; the code has 2F channels.
        scale: standard deviation of the frequencies (1.0 when None or <= 0).
    """

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        # A buffer, not a parameter: saved in the checkpoint, never trained.
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., 2) in [0, 1] -> codes (..., 2F)."""
        coords = 2 * coords - 1  # [0, 1] -> [-1, 1]
        coords = coords @ self.positional_encoding_gaussian_matrix  # (..., F)
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Codes for the centre of every cell of an h x w grid: returns (2F, h, w)."""
        h, w = size
        grid = torch.ones((h, w), device=self.positional_encoding_gaussian_matrix.device)
        # cumsum of ones counts 1, 2, 3, ... along an axis; minus 0.5 gives cell centres.
        y_embed = (grid.cumsum(dim=0) - 0.5) / h  # (h, w)
        x_embed = (grid.cumsum(dim=1) - 0.5) / w  # (h, w)
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))  # (h, w, 2F)
        return pe.permute(2, 0, 1)  # (2F, h, w)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Codes for pixel coordinates (B, N, 2) given as (x, y) in an image of size (H, W): (B, N, 2F)."""
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.float())  # points may come in float64 (the mask generator's grid)
