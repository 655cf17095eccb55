"""The image encoder: a plain ViT (MAE-pretrained in the paper) that turns a 1024 x 1024 image into a
256-channel 64 x 64 embedding.

Most blocks attend only inside 14 x 14 windows (cheap); a few blocks attend globally (expensive, but they
let information cross windows). Every attention adds a decomposed relative-position bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.layers import LayerNorm2d, MLPBlock


class ImageEncoderViT(nn.Module):
    """Vision transformer backbone with a convolutional neck.

    Args:
        img_size: side of the (square, padded) input image.
        patch_size: side of one patch; the grid is img_size // patch_size.
        in_chans: input channels (3).
        embed_dim, depth, num_heads, mlp_ratio: the transformer's size.
        out_chans: channels of the output embedding (the prompt dimension, 256).
        qkv_bias: bias on the qkv projection.
        norm_layer, act_layer: normalization and activation classes.
        use_abs_pos: add a learned absolute position embedding after the patch embedding.
        use_rel_pos: add the decomposed relative-position bias in attention.
        rel_pos_zero_init: start the relative-position tables at zero, else truncated normal (std 0.02). It only
            matters when training from scratch: loaded weights replace the tables.
        window_size: side of the attention windows; 0 means global attention everywhere.
        global_attn_indexes: blocks that attend globally instead of in windows.
    """

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_abs_pos: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        global_attn_indexes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))

        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, norm_layer=norm_layer,
                act_layer=act_layer, use_rel_pos=use_rel_pos, rel_pos_zero_init=rel_pos_zero_init,
                window_size=0 if i in global_attn_indexes else window_size,  # a global block sees the whole grid
                input_size=(grid, grid),
            )
            for i in range(depth)
        )

        # The neck: 1x1 conv to out_chans, then a 3x3 conv, each followed by a channel LayerNorm.
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, img_size, img_size) -> embedding (B, out_chans, grid, grid)."""
        x = self.patch_embed(x)  # (B, grid, grid, embed_dim)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))  # (B, embed_dim, grid, grid) -> (B, out_chans, grid, grid)


class PatchEmbed(nn.Module):
    """Cut the image into non-overlapping patches and project each to embed_dim (a strided conv)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, C, h, w) -> (B, h, w, C)


class Block(nn.Module):
    """Pre-norm transformer block whose attention runs in windows (window_size > 0) or globally."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        window_size: int = 0,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        # A windowed block attends over window_size x window_size tokens, a global one over the whole grid.
        attn_size = (window_size, window_size) if window_size > 0 else input_size
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos,
                              rel_pos_zero_init=rel_pos_zero_init, input_size=attn_size)
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=act_layer)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)  # (B * nWindows, ws, ws, C)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))  # (B, H, W, C)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Attention(nn.Module):
    """Multi-head self-attention over a 2-D grid of tokens, with decomposed relative positions."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        rel_pos_zero_init: bool = True,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size: expected (h, w) when use_rel_pos=True, got None.")
            # One learned vector per relative offset -(n-1) .. (n-1) along each axis.
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))
            if not rel_pos_zero_init:  # the ViTDet start for training from scratch
                for table in (self.rel_pos_h, self.rel_pos_w):
                    nn.init.trunc_normal_(table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, W, C) -> (B, H, W, C)."""
        B, H, W, _ = x.shape
        # (B, H*W, 3, nHeads, C') -> (3, B, nHeads, H*W, C')
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)  # (B*nHeads, H*W, C') each

        attn = (q * self.scale) @ k.transpose(-2, -1)  # (B*nHeads, H*W, H*W)
        if self.use_rel_pos:
            attn = add_decomposed_rel_pos(attn, q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
        attn = attn.softmax(dim=-1)
        x = attn @ v  # (B*nHeads, H*W, C')
        x = x.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)  # (B, H, W, C)
        return self.proj(x)


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, H, W, C) up to multiples of window_size and cut it into windows.

    Returns windows (B * nWindows, ws, ws, C) and the padded (Hp, Wp).
    """
    B, H, W, C = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # pads W then H at the bottom/right; C untouched
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    # (B, nH, ws, nW, ws, C) -> (B, nH, nW, ws, ws, C) -> (B*nH*nW, ws, ws, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window_size: int, pad_hw: tuple[int, int], hw: tuple[int, int]):
    """Inverse of window_partition: (B * nWindows, ws, ws, C) -> (B, H, W, C), cutting pad_hw back to hw."""
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // (Hp * Wp // window_size // window_size)
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    # (B, nH, nW, ws, ws, C) -> (B, nH, ws, nW, ws, C) -> (B, Hp, Wp, C)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, Hp, Wp, -1)
    if Hp > H or Wp > W:
        x = x[:, :H, :W, :].contiguous()
    return x


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """The relative-position vectors for every (query, key) pair along one axis: (q_size, k_size, C).

    `rel_pos` holds one vector per offset; if it was trained for another size it is linearly resized.
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        resized = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=max_rel_dist, mode="linear")
        rel_pos = resized.reshape(-1, max_rel_dist).permute(1, 0)  # (L', C)

    # Scale the coordinates of the shorter axis so both span the same range.
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    offsets = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)  # 0 .. max_rel_dist-1
    return rel_pos[offsets.long()]


def add_decomposed_rel_pos(attn, q, rel_pos_h, rel_pos_w, q_size: tuple[int, int], k_size: tuple[int, int]):
    """Add the MViTv2 decomposed relative-position bias to attention scores attn (B, q_h*q_w, k_h*k_w).

    The bias for query (qh, qw) and key (kh, kw) is q . R_h[qh - kh] + q . R_w[qw - kw]: one term per axis,
    so we never build a full 2-D table of offsets. q: queries (B, q_h*q_w, C).
    """
    return attn + rel_pos_bias(q, rel_pos_h, rel_pos_w, q_size, k_size)


def rel_pos_bias(q, rel_pos_h, rel_pos_w, q_size: tuple[int, int], k_size: tuple[int, int]) -> torch.Tensor:
    """The decomposed relative-position bias alone: (B, q_h*q_w, k_h*k_w)."""
    rel_h, rel_w = decomposed_rel_pos(q, rel_pos_h, rel_pos_w, q_size, k_size)
    B, q_h, q_w, k_h = rel_h.shape
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]  # (B, q_h, q_w, k_h, k_w)
    return bias.reshape(B, q_h * q_w, k_h * rel_w.shape[-1])


def decomposed_rel_pos(q, rel_pos_h, rel_pos_w, q_size: tuple[int, int], k_size: tuple[int, int]):
    """The two small factors of the bias: rel_h (B, q_h, q_w, k_h) and rel_w (B, q_h, q_w, k_w)."""
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)  # (q_h, k_h, C)
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)  # (q_w, k_w, C)
    B, _, dim = q.shape
    r_q = q.reshape(B, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)  # (B, q_h, q_w, k_h)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)  # (B, q_h, q_w, k_w)
    return rel_h, rel_w
