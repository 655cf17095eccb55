"""Fused attention for both attention modules of SAM: same parameters, same results, less time and memory.

F.scaled_dot_product_attention computes softmax(q k^T / sqrt(d) + bias) v in one kernel that never stores the
(N, N) scores. The decoder's attention has no bias, so the swap is one line. The encoder's attention adds the
decomposed relative-position bias, which the kernel can only take as a full (N, N) `attn_mask`; we build that
mask a few query rows at a time from its two small factors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..modeling import image_encoder, transformer


class FastEncoderAttention(image_encoder.Attention):
    """The image encoder's attention through F.scaled_dot_product_attention, the bias built in chunks."""

    # Largest attention mask built at once, in elements (128 MiB in float32); bigger ones go in chunks of
    # query rows. Smaller chunks save memory, but below ~8 rows of 64 the many small calls cost time.
    max_mask_elements: int = 2**25
    # Fold the bias into the dot product instead (see _attention_folded). None: fold on CUDA when the mask would
    # come in chunks of fewer than `fold_below_rows` query rows (on an H200, vit_b in bfloat16: the mask path is
    # faster at batch 1, 10 rows a chunk; folding is 1.5x faster at batch 8, 1 row a chunk); never on a CPU.
    fold_bias: bool | None = None
    fold_below_rows: int = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, _ = x.shape
        # (B, H*W, 3, nHeads, C') -> (3, B, nHeads, H*W, C')
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nHeads, H*W, C') each
        if self.use_rel_pos and self._fold(q, W):
            x = self._attention_folded(q, k, v, (H, W))
        elif self.use_rel_pos:
            x = self._attention_with_bias(q, k, v, (H, W))
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)  # (B, H, W, C)
        return self.proj(x)

    def _fold(self, q: torch.Tensor, W: int) -> bool:
        if self.fold_bias is not None:
            return self.fold_bias
        B, nH, L, _ = q.shape
        return q.is_cuda and self.max_mask_elements // (B * nH * W * L) < self.fold_below_rows

    def _attention_with_bias(self, q, k, v, size: tuple[int, int]) -> torch.Tensor:
        """q, k, v (B, nHeads, H*W, C') -> (B, nHeads, H*W, C'), with the relative-position bias as attn_mask.

        The bias factors are small, (.., H, W, H) and (.., H, W, W); the full mask is their broadcast sum, built
        for a few rows of queries at a time (rows are independent in attention).
        """
        B, nH, L, C = q.shape
        H, W = size
        # In float32 even for bfloat16 queries: cheap, and it keeps the bias accurate.
        rel_h, rel_w = image_encoder.decomposed_rel_pos(
            q.reshape(B * nH, L, C).float(), self.rel_pos_h.float(), self.rel_pos_w.float(), size, size
        )
        # contiguous: einsum may return permuted strides. The key's row term broadcasts over key columns, the
        # column term over key rows.
        rel_h = rel_h.to(q.dtype).contiguous().view(B, nH, H, W, H, 1)
        rel_w = rel_w.to(q.dtype).contiguous().view(B, nH, H, W, 1, W)
        rows = max(1, self.max_mask_elements // (B * nH * W * L))  # query rows per chunk
        if rows >= H:
            mask = (rel_h + rel_w).view(B, nH, L, L)  # (B, nHeads, H*W queries, H*W keys)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = torch.empty_like(q)
        # One buffer, filled again for every chunk: touching fresh memory costs more than the additions.
        # (Writing into a buffer is not differentiable, so training builds each chunk's mask afresh.)
        reuse = not (torch.is_grad_enabled() and (q.requires_grad or rel_h.requires_grad))
        buffer = q.new_empty(B, nH, rows, W, H, W) if reuse else None
        for r in range(0, H, rows):
            n = min(rows, H - r)
            if reuse:
                mask = torch.add(rel_h[:, :, r : r + n], rel_w[:, :, r : r + n], out=buffer[:, :, :n])
            else:
                mask = rel_h[:, :, r : r + n] + rel_w[:, :, r : r + n]
            queries = slice(r * W, (r + n) * W)  # the same query rows, flattened
            mask = mask.view(B, nH, n * W, L)  # (B, nHeads, chunk, H*W keys)
            out[:, :, queries] = F.scaled_dot_product_attention(q[:, :, queries], k, v, attn_mask=mask)
        return out


    def _attention_folded(self, q, k, v, size: tuple[int, int]) -> torch.Tensor:
        """The same attention with the bias folded into the dot product, so that no mask is needed at all.

        bias[i, j] = rel_h[i, row(j)] + rel_w[i, col(j)] is the dot product of the query's two bias rows with
        the key's one-hot row and column: appending them to q and k (and scaling q ourselves) gives
        q'.k' = q.k / sqrt(C') + bias. Kernels that take no mask (flash attention on a GPU) then apply.
        q, k, v (B, nHeads, H*W, C') -> (B, nHeads, H*W, C').
        """
        B, nH, L, C = q.shape
        H, W = size
        rel_h, rel_w = image_encoder.decomposed_rel_pos(
            q.reshape(B * nH, L, C).float(), self.rel_pos_h.float(), self.rel_pos_w.float(), size, size
        )
        keys = torch.arange(L, device=q.device)
        key_row = F.one_hot(keys // W, H).to(q.dtype).expand(B, nH, L, H)  # (B, nHeads, H*W keys, H)
        key_col = F.one_hot(keys % W, W).to(q.dtype).expand(B, nH, L, W)  # (B, nHeads, H*W keys, W)
        pad = -(C + H + W) % 8  # kernels want head sizes in multiples of 8
        q = torch.cat([q * C**-0.5, rel_h.to(q.dtype).reshape(B, nH, L, H), rel_w.to(q.dtype).reshape(B, nH, L, W),
                       q.new_zeros(B, nH, L, pad)], dim=-1)  # (B, nHeads, H*W, C' + H + W + pad)
        k = torch.cat([k, key_row, key_col, k.new_zeros(B, nH, L, pad)], dim=-1)
        v = F.pad(v, (0, q.shape[-1] - C))  # the same head size as q and k, as fused kernels want
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)[..., :C]


class FastDecoderAttention(transformer.Attention):
    """The two-way transformer's attention through F.scaled_dot_product_attention.

    Either side may have batch 1 and is then shared by the whole batch: the image tokens of
    FastMaskDecoder, before they depend on the prompt, are projected once instead of once per prompt.
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B or 1, Nq, C), k and v (B or 1, Nk, C) -> (B, Nq, C)."""
        q, k, v = self.q_proj(q), self.k_proj(k), self.v_proj(v)  # projected once, even when shared
        batch = max(q.shape[0], k.shape[0])
        q, k, v = (self._separate_heads(x.expand(batch, -1, -1)) for x in (q, k, v))  # (B, heads, N, C')
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, Nq, C')
        return self.out_proj(self._recombine_heads(out))
