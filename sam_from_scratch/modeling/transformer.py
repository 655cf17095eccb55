"""The two-way transformer inside the mask decoder.

Prompt tokens and image tokens take turns attending to each other: the tokens learn *where* in the image
their object is, and the image learns *which* prompt it is being asked about.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..modeling.layers import MLPBlock


class TwoWayTransformer(nn.Module):
    """A stack of TwoWayAttentionBlocks plus a final token -> image attention.

    Args:
        depth: number of two-way blocks (2 in SAM).
        embedding_dim: channels of tokens and image embedding (256).
        num_heads: attention heads (8).
        mlp_dim: hidden size of the token MLP (2048).
        activation: MLP activation class (ReLU).
        attention_downsample_rate: cross-attentions project to embedding_dim / rate channels (2).
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            image_embedding: (B, C, h, w).
            image_pe: positional code of the image grid, (B, C, h, w).
            point_embedding: the tokens (B, N, C): output tokens followed by prompt tokens.

        Returns:
            processed tokens (B, N, C) and processed image tokens (B, h*w, C).
        """
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1)  # (B, C, h, w) -> (B, h*w, C)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)  # (B, h*w, C)

        queries, keys = point_embedding, image_embedding
        for layer in self.layers:
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=image_pe)

        q = queries + point_embedding
        k = keys + image_pe
        queries = queries + self.final_attn_token_to_image(q=q, k=k, v=keys)
        queries = self.norm_final_attn(queries)
        return queries, keys


class TwoWayAttentionBlock(nn.Module):
    """Four steps: token self-attention, token -> image cross-attention, token MLP, image -> token
    cross-attention. Positional codes are re-added before every attention (except the very first
    self-attention, whose queries *are* the prompt codes)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (B, N, C) tokens, keys (B, h*w, C) image tokens; returns both updated."""
        # 1. tokens attend to each other
        queries = self.attend_tokens(queries, query_pe)

        # 2. tokens attend to the image
        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys))

        # 3. MLP on the tokens
        queries = self.norm3(queries + self.mlp(queries))

        # 4. the image attends to the tokens
        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries))
        return queries, keys

    def attend_tokens(self, queries: torch.Tensor, query_pe: torch.Tensor) -> torch.Tensor:
        """Step 1, the tokens' self-attention, normalized: (B, N, C) -> (B, N, C)."""
        if self.skip_first_layer_pe:  # the first block: the queries are the prompt codes themselves
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        return self.norm1(queries)


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the channels by `downsample_rate`."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(
                f"num_heads: expected a divisor of embedding_dim / downsample_rate = {self.internal_dim}, got {num_heads}."
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)  # (B, heads, N, C')

    def _recombine_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, h * c)  # (B, N, C)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Nq, C), k and v (B, Nk, C) -> (B, Nq, C)."""
        q = self._separate_heads(self.q_proj(q))  # (B, heads, Nq, C')
        k = self._separate_heads(self.k_proj(k))  # (B, heads, Nk, C')
        v = self._separate_heads(self.v_proj(v))  # (B, heads, Nk, C')

        attn = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, heads, Nq, Nk)
        out = attn.softmax(dim=-1) @ v  # (B, heads, Nq, C')
        return self.out_proj(self._recombine_heads(out))
