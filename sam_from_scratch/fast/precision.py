"""The dtype policy: what lets a model converted to bfloat16 (or float16) run, and stay accurate.

`model.to(torch.bfloat16)` converts every weight. The plain model then fails on float32 inputs and would round
what must stay exact, so each subclass here adds one cast where it matters:
- images are cast where they enter the encoder (Sam.preprocess normalises float32 pixels in float32);
- positional codes are computed from float32 coordinates (in bfloat16 a coordinate would be rounded to 1/256
  of the image, 4 pixels at 1024) and then cast;
- LayerNorm2d takes its statistics in float32 (in one F.layer_norm pass over the channels);
- prompt embeddings are cast to the model's dtype (mask logits fed back arrive in float32);
- mask logits leave the decoder in float32 (FastMaskDecoder).
The prompt encoder also keeps its grid's positional code from one call to the next (get_dense_pe), and the
patch embedding hands on its tokens in one block of memory (a layout, not a precision: it is here because it
is the encoder's entrance, as the image's cast is).
In float32 every cast is a no-op, so these classes give the plain model's results up to float rounding
(LayerNorm2d's one-pass statistics differ by about 1e-6).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..modeling.image_encoder import ImageEncoderViT, PatchEmbed
from ..modeling.layers import LayerNorm2d
from ..modeling.positional_encoding import PositionEmbeddingRandom
from ..modeling.prompt_encoder import PromptEncoder
from .checks import same_values


class FastImageEncoderViT(ImageEncoderViT):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.patch_embed.proj.weight.dtype))


class FastPatchEmbed(PatchEmbed):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The patches' tokens (B, h, w, C) in one block of memory, channels last. The convolution gives
        (B, C, h, w), so the permuted view holds a token's channels h * w apart; element-wise results keep the
        layout of their inputs, so without this one copy the whole residual stream would keep it, and every
        LayerNorm and residual addition of every block would read across strides (0.4 s of a 1.8 s bfloat16
        pass of vit_b on a CPU with AMX)."""
        return super().forward(x).contiguous()


class FastLayerNorm2d(LayerNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One F.layer_norm pass over the channels (last, once permuted), statistics in float32."""
        y = F.layer_norm(x.permute(0, 2, 3, 1).float(), (x.shape[1],), self.weight.float(), self.bias.float(), self.eps)
        return y.permute(0, 3, 1, 2).to(x.dtype)  # (B, C, H, W), laid out channels last


class FastPositionEmbeddingRandom(PositionEmbeddingRandom):
    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        matrix = self.positional_encoding_gaussian_matrix
        with torch.autocast(coords.device.type, enabled=False):  # autocast would round the product to bfloat16
            coords = (2 * coords.float() - 1) @ matrix.float()  # (..., F), in float32
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).to(matrix.dtype)


class FastPromptEncoder(PromptEncoder):
    def get_dense_pe(self) -> torch.Tensor:
        """The grid's positional code (1, C, h, w), computed once and kept while the random matrix holds the
        same values (compared with a copy at each call: it has 2 x C/2 of them) and the grid its size (a click
        would otherwise recompute h * w * C sines and cosines). Computed afresh while gradients flow through
        it, while compiling or exporting, and after the code handed out was changed in place; not kept when
        made under torch.inference_mode (its tensors could not be changed outside it)."""
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        if (torch.is_grad_enabled() and matrix.requires_grad) or torch.compiler.is_compiling():
            return super().get_dense_pe()
        kept = self.__dict__.get("_dense_pe")  # (copy of the matrix, grid size, the code, its version)
        if (kept is None or not same_values([kept[0]], [matrix]) or kept[1] != tuple(self.image_embedding_size)
                or kept[2]._version != kept[3]):
            with torch.no_grad():
                pe = super().get_dense_pe()
            if torch.is_inference_mode_enabled():
                return pe
            kept = self.__dict__["_dense_pe"] = (matrix.detach().clone(), tuple(self.image_embedding_size), pe,
                                                 pe._version)
        return kept[2]

    def __getstate__(self):
        """Pickles and deep copies leave the kept code out: made again on use."""
        state = super().__getstate__()
        return {name: value for name, value in state.items() if name != "_dense_pe"}

    def forward(self, points, boxes, masks):
        dtype = self.no_mask_embed.weight.dtype
        if masks is not None:
            masks = masks.to(dtype)
        sparse, dense = super().forward(points, boxes, masks)
        return sparse.to(dtype), dense
