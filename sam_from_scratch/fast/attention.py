"""Fused attention for both attention modules of SAM: same parameters, same results, less time and memory.

F.scaled_dot_product_attention computes softmax(q k^T / sqrt(d) + bias) v in one kernel that never stores the
(N, N) scores. The decoder's attention has no bias, so the swap is one line. The encoder's attention adds the
decomposed relative-position bias, which the kernel can only take as a full (N, N) `attn_mask`; we build that
mask a few query rows at a time from its two small factors, or fold the bias into q and k instead. In
bfloat16 on a CPU without AMX the fused kernel runs no faster than in float32, so there the scores are written
out, a few query rows at a time, with plain matrix products that do run at the bfloat16 rate; with AMX the
fused kernel uses the AMX tiles, and the folded bias lets it run without a mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..device import cpu_has_amx
from ..modeling import image_encoder, transformer
from .checks import as_built


class FastEncoderAttention(image_encoder.Attention):
    """The image encoder's attention through F.scaled_dot_product_attention, the bias applied one of three ways.

    - "mask": the bias as attn_mask, built a few query rows at a time (_attention_mask);
    - "folded": the bias folded into q and k, so that no mask is needed and flash kernels apply
      (_attention_folded);
    - "scores": no fused kernel: scores, bias and softmax written out for a few query rows at a time
      (_attention_scores).
    """

    # Largest mask built at once, in elements, on a CPU (128 MiB in float32) and on a GPU (512 MiB in
    # bfloat16); bigger ones go in chunks of query rows. Smaller chunks save memory, but below ~8 rows of 64
    # the many small calls cost time.
    max_mask_elements: int = 2**25
    max_mask_elements_cuda: int = 2**28
    # Largest block of scores written out at once by the "scores" path (16 MiB in bfloat16: it stays in a
    # CPU's last-level cache between the product that writes it and the softmax that reads it).
    max_score_elements: int = 2**23
    # None: chosen by device, dtype and size (see bias_path_for); or one of BIAS_PATHS.
    bias_path: str | None = None
    BIAS_PATHS = ("mask", "folded", "scores")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, _ = x.shape
        # (B, H*W, 3, nHeads, C') -> (3, B, nHeads, H*W, C')
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, nHeads, H*W, C') each
        if not self.use_rel_pos:
            x = F.scaled_dot_product_attention(q, k, v)
        elif (path := self.bias_path_for(q, (H, W))) == "folded":
            x = self._attention_folded(q, k, v, (H, W))
        elif path == "scores":
            x = self._attention_scores(q, k, v, (H, W))
        else:
            x = self._attention_mask(q, k, v, (H, W))
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)  # (B, H, W, C)
        return self.proj(x)

    def _rows_per_chunk(self, q: torch.Tensor, W: int, limit: int | None = None) -> int:
        """Query rows (of W tokens) per chunk of the mask (or of the scores, given their `limit`), for
        q (B, nHeads, H*W, C')."""
        B, nH, L, _ = q.shape
        if limit is None:
            limit = self.max_mask_elements_cuda if q.is_cuda else self.max_mask_elements
        return max(1, limit // (B * nH * W * L))

    def bias_path_for(self, q: torch.Tensor, size: tuple[int, int]) -> str:
        """`bias_path` if set; else "folded" in bfloat16 on a CPU with AMX; where the mask would come in chunks
        (a global block), "folded" in half precision on a GPU and "scores" in bfloat16 on another CPU; "mask"
        otherwise. (Measured, vit_b: on an H200 in bfloat16 the whole mask at once beats folding at batch 1,
        folding beats a mask in chunks of 10 rows at batch 8, and in float32 the mask wins at both. On a CPU
        with AVX-512-BF16 and no AMX, a global block in bfloat16: "scores" 1.6x faster than "mask", "folded"
        slowest; windowed blocks and float32: "mask" faster. On a CPU with AMX in bfloat16 the fused kernel
        runs its products on the AMX tiles: "folded" 1.4-1.6x faster than "mask" in both kinds of block.)"""
        if self.bias_path is not None:
            return self.bias_path
        on_cpu_bf16 = not (q.is_cuda or q.is_mps) and q.dtype == torch.bfloat16
        if on_cpu_bf16 and cpu_has_amx():
            return "folded"
        H, W = size
        chunked = self._rows_per_chunk(q, W) < H
        if chunked and q.is_cuda and q.dtype != torch.float32:
            return "folded"
        if chunked and on_cpu_bf16:
            return "scores"
        return "mask"

    def _bias_factors(self, q: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The bias's two small factors in float32 (cheap, and it keeps the bias accurate in bfloat16):
        q (B, nHeads, H*W, C') -> rel_h (B, nHeads, H*W, H), rel_w (B, nHeads, H*W, W)."""
        B, nH, L, C = q.shape
        rel_h, rel_w = image_encoder.decomposed_rel_pos(
            q.reshape(B * nH, L, C).float(), self.rel_pos_h.float(), self.rel_pos_w.float(), size, size
        )
        # contiguous: einsum may return permuted strides
        return rel_h.contiguous().view(B, nH, L, -1), rel_w.contiguous().view(B, nH, L, -1)

    def _attention_mask(self, q, k, v, size: tuple[int, int]) -> torch.Tensor:
        """q, k, v (B, nHeads, H*W, C') -> (B, nHeads, H*W, C'), with the relative-position bias as attn_mask.

        The bias factors are small, (.., H, W, H) and (.., H, W, W); the full mask is their broadcast sum, built
        for a few rows of queries at a time (rows are independent in attention).
        """
        B, nH, L, C = q.shape
        H, W = size
        # On a CPU a batch goes in groups of images, each chunk as tall as one image's would be: chunks over the
        # whole batch would hold B times fewer query rows, and many short chunks cost time (vit_b, batch 4:
        # 398 ms an image for a global block in chunks of 2 rows, 310 ms in chunks of 10).
        one_image = self._rows_per_chunk(q[:1], W)
        group = max(1, one_image // min(H, one_image))  # images a group
        if not q.is_cuda and group < B:
            return torch.cat([self._attention_mask(q[i : i + group], k[i : i + group], v[i : i + group], size)
                              for i in range(0, B, group)])
        rel_h, rel_w = self._bias_factors(q, size)
        # The key's row term broadcasts over key columns, the column term over key rows.
        rel_h = rel_h.to(q.dtype).view(B, nH, H, W, H, 1)
        rel_w = rel_w.to(q.dtype).view(B, nH, H, W, 1, W)
        rows = self._rows_per_chunk(q, W)  # query rows per chunk
        if rows >= H:
            mask = (rel_h + rel_w).view(B, nH, L, L)  # (B, nHeads, H*W queries, H*W keys)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = torch.empty_like(q)
        # One buffer, filled again for every chunk: touching fresh memory costs more than the additions.
        # (Writing into a buffer is not differentiable, so training builds each chunk's mask afresh.)
        # (torch.compile traces no writes into a strided `out=`: it plans its own buffers.)
        reuse = not (torch.is_grad_enabled() and (q.requires_grad or rel_h.requires_grad))
        reuse = reuse and not torch.compiler.is_compiling()
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

    def _attention_scores(self, q, k, v, size: tuple[int, int]) -> torch.Tensor:
        """The same attention with no fused kernel: q (B, nHeads, H*W, C') -> (B, nHeads, H*W, C').

        For a few query rows at a time: scores = q k^T / sqrt(C') (one matrix product), plus the bias's two
        factors broadcast in place, softmax over the keys, times v (another matrix product).
        """
        B, nH, L, C = q.shape
        H, W = size
        rel_h, rel_w = self._bias_factors(q, size)
        rel_h = rel_h.to(q.dtype).view(B, nH, H, W, H, 1)
        rel_w = rel_w.to(q.dtype).view(B, nH, H, W, 1, W)
        # Each chunk's products read these whole: in one block of memory each, not strided views of qkv.
        keys_t = k.transpose(-2, -1).contiguous()  # (B, nHeads, C', H*W keys)
        q, v = q.contiguous(), v.contiguous()
        rows = self._rows_per_chunk(q, W, self.max_score_elements)
        out = torch.empty_like(q)
        for r in range(0, H, rows):
            n = min(rows, H - r)
            queries = slice(r * W, (r + n) * W)
            scores = torch.matmul(q[:, :, queries] * C**-0.5, keys_t)  # (B, nHeads, n*W, H*W)
            # (B, nHeads, n, W, H, W): key rows and key columns apart, for the two factors to broadcast
            scores = scores.view(B, nH, n, W, H, W).add_(rel_h[:, :, r : r + n]).add_(rel_w[:, :, r : r + n])
            out[:, :, queries] = torch.softmax(scores.view(B, nH, n * W, L), dim=-1) @ v
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
        rel_h, rel_w = self._bias_factors(q, size)
        keys = torch.arange(L, device=q.device)
        key_row = F.one_hot(keys // W, H).to(q.dtype).expand(B, nH, L, H)  # (B, nHeads, H*W keys, H)
        key_col = F.one_hot(keys % W, W).to(q.dtype).expand(B, nH, L, W)  # (B, nHeads, H*W keys, W)
        pad = -(C + H + W) % 8  # kernels want head sizes in multiples of 8
        # (B, nHeads, H*W, C' + H + W + pad)
        q = torch.cat([q * C**-0.5, rel_h.to(q.dtype), rel_w.to(q.dtype), q.new_zeros(B, nH, L, pad)], dim=-1)
        k = torch.cat([k, key_row, key_col, k.new_zeros(B, nH, L, pad)], dim=-1)
        v = F.pad(v, (0, q.shape[-1] - C))  # the same head size as q and k, as fused kernels want
        return F.scaled_dot_product_attention(q, k, v, scale=1.0)[..., :C]


class FastDecoderAttention(transformer.Attention):
    """The two-way transformer's attention through F.scaled_dot_product_attention, and its cross-attentions
    with the image's side computed in fewer, smaller matrix products.

    Either side may have batch 1 and is then shared by the whole batch: the image tokens of
    FastMaskDecoder, before they depend on the prompt, are projected once instead of once per prompt.

    A cross-attention between a few tokens (Nt: 7 for one click) and many image tokens (N: 4096) spends its
    time projecting the image tokens, (N, C) @ (C, C') three times, and in kernels built for long sequences
    on both sides. Products are associative, so the small matrices can meet first: for head h,
    q_h k_h^T = q_h (x W_k,h^T)^T = (q_h W_k,h) x^T, a (Nt, C) matrix against the image tokens x; the
    softmax weights P_h (Nt, N) sum to 1 over the image, so P_h (x W_v,h^T + b_v,h) = (P_h x) W_v,h^T + b_v,h.
    Every product with the image then has Nt * heads (56) columns instead of C' (128) or C (256), and no
    (N, C') tensor is made at all (tokens_to_image, image_to_tokens).
    """

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B or 1, Nq, C), k and v (B or 1, Nk, C) -> (B, Nq, C)."""
        return self.attend(self.q_proj(q), self.k_proj(k), self.v_proj(v))  # projected once, even when shared

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The rest, from projections made elsewhere (FastTwoWayAttentionBlock shares and keeps some):
        q (B or 1, Nq, C'), k and v (B or 1, Nk, C') -> (B, Nq, C)."""
        batch = max(q.shape[0], k.shape[0])
        q, k, v = (self._separate_heads(x.expand(batch, -1, -1)) for x in (q, k, v))  # (B, heads, N, C')
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, Nq, C')
        return self.out_proj(self._recombine_heads(out))

    def _heads_of_weight(self, linear: torch.nn.Linear) -> torch.Tensor:
        """A projection's weight (C', C) seen per head: (heads, C'/heads, C)."""
        return linear.weight.view(self.num_heads, -1, linear.weight.shape[-1])

    def tokens_to_image(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """As forward(q, k, v) for a few tokens q (B, Nt, C) attending to many image tokens k, v (B or 1, N, C)."""
        if not as_built(self):  # a forward replaced (notebook 06 does), a hook, a LoRA layer: they run
            return self(q=q, k=k, v=v)
        B, Nt, H = max(q.shape[0], k.shape[0]), q.shape[1], self.num_heads
        q = self._separate_heads(self.q_proj(q)) * (self.internal_dim // H) ** -0.5  # (B or 1, H, Nt, d)
        # the key bias adds q_h . b_k,h to all of one query token's scores alike: the softmax does not see it
        q_k = torch.einsum("bhtd,hdc->bhtc", q, self._heads_of_weight(self.k_proj)).flatten(1, 2)  # (., H*Nt, C)
        scores = q_k @ k.transpose(1, 2)  # (B or 1, H*Nt, C) @ (B or 1, C, N) -> (B, H*Nt, N)
        if torch.is_grad_enabled() and self.k_proj.bias.requires_grad:
            # training: the key bias added after all, so that it gets its gradient (zero), as in the plain model
            scores = scores + torch.einsum("bhtd,hd->bht", q, self.k_proj.bias.view(H, -1)).flatten(1)[..., None]
        weights = scores.float().softmax(dim=-1).to(scores.dtype)
        mixed = (weights @ v).view(B, H, Nt, -1)  # (B, H, Nt, C): each head's mix of the image tokens
        out = torch.einsum("bhtc,hdc->bthd", mixed, self._heads_of_weight(self.v_proj))  # (B, Nt, H, d)
        out = out + self.v_proj.bias.view(H, -1)  # each head's weights sum to 1: the value bias once
        return self.out_proj(out.flatten(2))  # (B, Nt, C)

    def image_to_tokens(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor,
                        projected: bool = False, overwrite: bool = False) -> torch.Tensor:
        """residual + forward(x, k, v) for many image tokens x (B or 1, N, C) attending to a few tokens k, v
        (B, Nt, C); with projected=True, x is already q_proj of the image tokens: (B or 1, N, C'). overwrite:
        the sum may be written into residual (an intermediate of the caller's, no longer needed), where it has
        the sum's shape and dtype, and neither gradients nor autocast are on."""
        if not projected and not as_built(self):
            return residual + self(q=x, k=k, v=v)
        B, Nt, H = max(x.shape[0], k.shape[0]), k.shape[1], self.num_heads
        scale = (self.internal_dim // H) ** -0.5
        k = self._separate_heads(self.k_proj(k)).expand(B, -1, -1, -1) * scale  # (B, H, Nt, d)
        v = self._separate_heads(self.v_proj(v)).expand(B, -1, -1, -1)  # (B, H, Nt, d)
        # scores[h*Nt + t, n] = k_h[t] . q_h[n], image tokens last: the softmax over the 7 tokens of a head then
        # runs along rows of 4096 contiguous values, not 4096 * heads rows of 7 (twenty times slower on a CPU)
        if projected:
            eye = torch.eye(H, dtype=k.dtype, device=k.device)
            k_blocks = torch.einsum("bhtd,hg->bhtgd", k, eye).reshape(B, H * Nt, -1)  # (B, H*Nt, C') by head
            scores = k_blocks @ x.transpose(1, 2)  # (B, H*Nt, C') @ (B or 1, C', N) -> (B, H*Nt, N)
        else:  # the keys meet the query projection first: (H*Nt, C)
            w_q = self._heads_of_weight(self.q_proj)  # (H, d, C)
            k_in = torch.einsum("bhtd,hdc->bhtc", k, w_q).flatten(1, 2)  # (B, H*Nt, C)
            bias = torch.einsum("bhtd,hd->bht", k, self.q_proj.bias.view(H, -1)).flatten(1)  # (B, H*Nt)
            scores = torch.baddbmm(bias[:, :, None], k_in, x.expand(B, -1, -1).transpose(1, 2))  # (B, H*Nt, N)
        N = scores.shape[-1]
        weights = scores.view(B, H, Nt, N).float().softmax(dim=2).to(scores.dtype).view(B, H * Nt, N)
        # the values meet the output projection first: (B, H*Nt, C); each head's weights sum to 1, so the
        # output bias rides on head 0's rows (exactly so in float32; in bfloat16 the sums round like the rest)
        w_o = self.out_proj.weight.t().reshape(H, -1, self.embedding_dim)  # (H, d, C)
        v_out = torch.einsum("bhtd,hdc->bhtc", v, w_o)  # (B, H, Nt, C)
        v_out = torch.cat([v_out[:, :1] + self.out_proj.bias, v_out[:, 1:]], dim=1).flatten(1, 2)  # (B, H*Nt, C)
        if (overwrite and not torch.is_grad_enabled() and not torch.is_autocast_enabled(residual.device.type)
                and residual.shape == (B, N, v_out.shape[-1]) and residual.dtype == v_out.dtype == weights.dtype):
            return residual.baddbmm_(weights.transpose(1, 2), v_out)  # one pass over the sum less than out of place
        return torch.baddbmm(residual, weights.transpose(1, 2), v_out)  # (B, N, H*Nt) @ (B, H*Nt, C) -> (B, N, C)
