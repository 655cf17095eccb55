"""The mask decoder: from image embedding + prompt embeddings to masks and their predicted quality.

Learned output tokens (one for the IoU score, four for masks) ride through the two-way transformer with
the prompt tokens. Afterwards each mask token is turned by its own small MLP (a *hypernetwork*) into the
weights of a 1x1 classifier, applied by a dot product to the upscaled image features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.layers import LayerNorm2d


class MaskDecoder(nn.Module):
    """
    Args:
        transformer_dim: channels of the prompt and image embeddings (256).
        transformer: the TwoWayTransformer.
        num_multimask_outputs: masks predicted for an ambiguous prompt (3); one more is the single mask.
        activation: activation class of the upscaling stack.
        iou_head_depth, iou_head_hidden_dim: the MLP that predicts each mask's IoU.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1  # token 0: single mask; 1..3: the ambiguous ones
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)

        # Two transposed convs: 4x the resolution, 1/8 of the channels.
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embeddings: (1 or B, C, h, w).
            image_pe: (1, C, h, w).
            sparse_prompt_embeddings: (B, N, C).
            dense_prompt_embeddings: (B, C, h, w).
            multimask_output: return the three ambiguity masks instead of the single one.

        Returns:
            mask logits (B, 3 or 1, 4h, 4w) and predicted IoUs (B, 3 or 1).
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, mask_slice, :, :], iou_pred[:, mask_slice]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All four masks and IoUs: (B, 4, 4h, 4w) and (B, 4)."""
        B = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)  # (5, C)
        output_tokens = output_tokens.unsqueeze(0).expand(B, -1, -1)  # (B, 5, C)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)  # (B, 5 + N, C)

        # One image embedding serves every prompt: broadcasting (1, C, h, w) + (B, C, h, w) gives each prompt
        # its own copy of the image side, with its dense prompt added.
        src = image_embeddings + dense_prompt_embeddings  # (B, C, h, w)
        pos_src = torch.repeat_interleave(image_pe, src.shape[0], dim=0)  # (B, C, h, w)
        _, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]  # (B, C)
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]  # (B, 4, C)

        src = src.transpose(1, 2).reshape(-1, c, h, w)  # (B, h*w, C) -> (B, C, h, w)
        upscaled = self.output_upscaling(src)  # (B, C/8, 4h, 4w)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, 4, C/8)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)  # (B, 4, 4h, 4w)

        iou_pred = self.iou_prediction_head(iou_token_out)  # (B, 4)
        return masks, iou_pred


class MLP(nn.Module):
    """num_layers Linear layers with ReLU between them (keys `layers.0`, `layers.1`, ...)."""

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, sigmoid_output: bool = False
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(dims[:-1], dims[1:]))
        self.num_layers = num_layers
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x
