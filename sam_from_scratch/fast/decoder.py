"""The mask decoder for interactive clicks and batches of prompts: the same weights, less memory traffic.

A click costs the plain decoder about 4 GFLOP, a few milliseconds of arithmetic; most of its time goes to
moving (4096, 256) tensors around. So here:

- **One image side for many prompts.** The plain decoder gives every prompt its own copy of the image
  embedding. Without mask prompts the dense embedding is the same for all prompts too (an expanded
  no_mask_embed, stride 0), so the image side stays one copy (batch 1) until the prompts reach it: the
  transformer's first image projections are computed once instead of B times (FastDecoderAttention
  broadcasts the shared side), and the positional code is never repeated.
- **The upscaling as two matrix products, channels last, in block order.** A transposed convolution with
  kernel 2 and stride 2 turns each input pixel into a 2 x 2 block, a linear map of that pixel's channels:
  (h*w, C) @ (C, 2 * 2 * C'). The blocks stay where the product leaves them, each pixel's four outputs
  side by side: the LayerNorm2d and the GELU act on each output pixel's channels wherever it lies, the second
  convolution maps each of them again, and the hypernetwork's dot products too. Only the final masks, a few
  channels, are put in image order (blocks_to_image), where the plain path rearranges every channel twice.
  On a CPU the second product and its GELU are one call to oneDNN (a library PyTorch uses for many CPU
  kernels): the GELU is applied while the product's output is still in the cache, where the plain way writes
  the (B, 256 * 256, 32) output out to memory and reads it back (16 prompts' product and GELU on 2 cores:
  44 -> 23 ms).
- **The image side of the first layer, kept between clicks.** In the first two-way block the image tokens
  of a click without a mask prompt are the image embedding plus the no-mask embedding, the same for every such
  click on an image, so their three projections (keys + positional code, values, queries + positional code) are
  kept (FastTwoWayTransformer) and the next such click on the same image starts from them. (A click that
  feeds a previous mask back as mask_input, as the widget's later clicks on an object do, has an image side
  of its own.) They are made again when the embedding or the
  positional code is another tensor or was changed in place, or when the no-mask embedding or one of the
  three projections' weights holds other values (compared with copies: fused optimizer steps and writes
  through .data count no change); they are not kept while gradients flow, under autocast, or while compiling
  or exporting.
- **The other cross-attentions without image projections.** After the first block the image tokens depend on
  the prompt; there the tokens' side meets the weights first (FastDecoderAttention.tokens_to_image and
  image_to_tokens), so the image tokens enter products of heads x tokens columns and are never projected.
  The second block adds its image-to-token attention into the first block's output in place, when both blocks
  run as written and no gradient flows: no one else holds that tensor then.
- **Only the masks asked for.** One mask, or the three ambiguity masks: the others' hypernetwork MLPs and
  products are skipped (not while training: then every weight gets its gradient, zero where unused).

Each shortcut multiplies weights itself, so it is taken only where the modules involved run as written
(checks.as_built): a module whose forward was replaced, a hook, or a user's layer (a LoRA linear) put in
place of one of ours is called as a module, as the plain decoder does.

Logits leave in float32 whatever the model's dtype.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.layers import LayerNorm2d
from ..modeling.mask_decoder import MaskDecoder
from ..modeling.transformer import TwoWayAttentionBlock, TwoWayTransformer
from .attention import FastDecoderAttention
from .checks import as_built, eager_inference, same_values


class ImageSide(NamedTuple):
    """What a block's two cross-attentions take from the image tokens, projected: (1 or B, h*w, C') each."""

    k: torch.Tensor  # token -> image: the keys (image tokens + positional code)
    v: torch.Tensor  # token -> image: the values (image tokens)
    q: torch.Tensor  # image -> token: the queries (image tokens + positional code)


class FastTwoWayAttentionBlock(TwoWayAttentionBlock):
    def image_side(self, keys: torch.Tensor, key_pe: torch.Tensor) -> ImageSide:
        """The image tokens' projections; the tokens change only at the end of the block, so both
        cross-attentions see the same keys + key_pe."""
        keys_pe = keys + key_pe  # (1 or B, h*w, C)
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return ImageSide(t2i.k_proj(keys_pe), t2i.v_proj(keys), i2t.q_proj(keys_pe))

    def forward(self, queries, keys, query_pe, key_pe, image_side: ImageSide | None = None, keys_owned: bool = False):
        """As TwoWayAttentionBlock.forward; image_side: this block's image_side(keys, key_pe), if known.
        Without it, the cross-attentions meet the image tokens in smaller products (FastDecoderAttention).
        keys_owned: keys is the previous block's output, which this block may overwrite."""
        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        if not (isinstance(t2i, FastDecoderAttention) and isinstance(i2t, FastDecoderAttention)):
            # someone put other attention modules here (notebook 06 records attention maps): the plain block
            keys = keys.expand(queries.shape[0], -1, -1)  # (B, h*w, C): the image side may be shared
            return super().forward(queries, keys, query_pe, key_pe)
        queries = self.attend_tokens(queries, query_pe)  # 1. tokens attend to each other
        # 2. tokens attend to the image
        q = queries + query_pe
        if image_side is None:
            keys_pe = keys + key_pe  # (1 or B, h*w, C): both cross-attentions see the same image tokens
            attended = t2i.tokens_to_image(q, keys_pe, keys)
        else:
            attended = t2i.attend(t2i.q_proj(q), image_side.k, image_side.v)
        queries = self.norm2(queries + attended)
        # 3. MLP on the tokens
        queries = self.norm3(queries + self.mlp(queries))
        # 4. the image attends to the tokens
        q = queries + query_pe
        if image_side is None:
            keys = i2t.image_to_tokens(keys_pe, q, queries, residual=keys, overwrite=keys_owned)
        else:
            keys = i2t.image_to_tokens(image_side.q, q, queries, residual=keys, projected=True)
        return queries, self.norm4(keys)


class FastTwoWayTransformer(TwoWayTransformer):
    def forward(self, image_embedding, image_pe, point_embedding, keep: tuple | None = None):
        """As TwoWayTransformer.forward. keep: for an image side shared by all prompts (batch 1), the tensors
        it is made of; the first block's projections of it are then kept and reused while they stay the same."""
        image_embedding = image_embedding.flatten(2).permute(0, 2, 1)  # (B, C, h, w) -> (B, h*w, C)
        image_pe = image_pe.flatten(2).permute(0, 2, 1)  # (1, h*w, C)
        queries, keys = point_embedding, image_embedding
        for i, layer in enumerate(self.layers):
            side = self._kept_image_side(layer, keys, image_pe, keep) if i == 0 and keep is not None else None
            extra = {} if side is None else {"image_side": side}
            if i > 0 and self._keys_owned(self.layers[i - 1], layer):
                extra["keys_owned"] = True  # the previous block's output, made here: this block may overwrite it
            queries, keys = layer(queries=queries, keys=keys, query_pe=point_embedding, key_pe=image_pe, **extra)
        final = self.final_attn_token_to_image
        if isinstance(final, FastDecoderAttention):
            attended = final.tokens_to_image(queries + point_embedding, keys + image_pe, keys)
        else:  # another attention module put here: called as the plain transformer calls it
            keys = keys.expand(queries.shape[0], -1, -1)  # (B, h*w, C)
            attended = final(q=queries + point_embedding, k=keys + image_pe, v=keys)
        return self.norm_final_attn(queries + attended), keys

    @staticmethod
    def _keys_owned(previous: nn.Module, layer: nn.Module) -> bool:
        """Whether `layer` may overwrite the image tokens that `previous` hands it: both blocks as built (no
        hook keeps a reference to them, no replaced forward passes the caller's tensor on or lacks the
        keyword), in eager inference."""
        return (isinstance(previous, FastTwoWayAttentionBlock) and isinstance(layer, FastTwoWayAttentionBlock)
                and eager_inference() and as_built(previous) and as_built(layer))

    def _kept_image_side(self, layer, keys, image_pe, keep: tuple) -> ImageSide | None:
        """The first block's image side, computed afresh unless what it comes from is unchanged: the no-mask
        embedding and the three projections' weights compared value by value with copies (a fused optimizer
        step or a write through .data changes no version counter), the embedding and the positional code (4 MiB
        each for vit_b: comparing them would cost a click about a millisecond, more with a cold cache) the same
        tensors, unchanged by torch's count of in-place changes."""
        if (not eager_inference() or torch.is_autocast_enabled(keys.device.type)
                or not isinstance(layer, FastTwoWayAttentionBlock) or not as_built(layer)):
            return None  # a replaced forward, a hook or a user's layer in the block must run: no kept side
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        embedding, no_mask, pe = keep
        large = [t for t in (embedding, pe) if not t.is_inference()]  # (inference tensors count no changes)
        small = [no_mask, *(t for t in (embedding, pe) if t.is_inference()),
                 *(p for linear in (t2i.k_proj, t2i.v_proj, i2t.q_proj) for p in linear.parameters())]
        key = [(id(t), t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) for t in large]
        kept = self.__dict__.get("_kept")  # (key, the large tensors, held so that no id is reused, copies of the
        if kept is None or kept[0] != key or not same_values(kept[2], small):  # small ones, the side)
            kept = self.__dict__["_kept"] = (key, large, [t.clone() for t in small], layer.image_side(keys, image_pe))
        return kept[3]

    def __getstate__(self):
        """Pickles and deep copies leave the kept side out (it holds an image's embedding): made again on use."""
        state = super().__getstate__()
        return {name: value for name, value in state.items() if name != "_kept"}


def transposed_conv_2x2(x: torch.Tensor, conv: nn.ConvTranspose2d, act: nn.Module | None = None) -> torch.Tensor:
    """conv (kernel 2, stride 2) on channels-last pixels, the output left in block order:
    x (B, P, C) -> (B, 4P, C'), where row 4p + 2a + b is pixel p's output (a, b) of its 2 x 2 block.
    act: an activation module applied to the output, in the same call to oneDNN where it is a GELU that can."""
    B, P, _ = x.shape
    weight = conv.weight.permute(2, 3, 1, 0).reshape(-1, conv.in_channels)  # (C, C', 2, 2) -> (2 * 2 * C', C)
    bias = conv.bias.repeat(4)  # (2 * 2 * C',)
    if act is not None and fusable_gelu(act, x, weight):
        y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], act.approximate)
    else:
        y = F.linear(x, weight, bias)
        y = y if act is None else act(y)
    return y.view(B, 4 * P, conv.out_channels)


def fusable_gelu(act: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether x @ weight.T + bias, then `act`, can be one oneDNN call: act an nn.GELU as torch wrote it, x
    contiguous on a CPU, without gradients, autocast, compiling (the compiler fuses by itself) or an exporter
    tracing, and oneDNN's product with a GELU computing what the two calls compute for this dtype (checked once
    per dtype)."""
    if type(act) is not nn.GELU or "forward" in vars(act) or x.device.type != "cpu" or x.dtype != weight.dtype:
        return False
    if not torch.backends.mkldnn.enabled:  # the user turned oneDNN off
        return False
    if not x.is_contiguous():  # as the check below ran it
        return False
    if not eager_inference() or torch.is_autocast_enabled("cpu"):
        return False
    return _onednn_linear_gelu_agrees(x.dtype, act.approximate)


@functools.cache
def _onednn_linear_gelu_agrees(dtype: torch.dtype, approximate: str) -> bool:
    """Whether this torch has oneDNN's product with a GELU (a private operator of PyTorch, used by its compiler
    on CPUs) and it gives F.gelu(F.linear(...)) on a small input, up to the rounding of `dtype`. bfloat16 only
    where oneDNN computes in it (AVX-512-BF16 or AMX; elsewhere it would emulate it)."""
    if dtype not in (torch.float32, torch.bfloat16) or not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(shape, generator=generator).to(dtype) for shape in ((2, 40, 16), (24, 16), (24,)))
    try:
        if dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        with torch.no_grad():
            fused = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], approximate)
    except (AttributeError, RuntimeError, TypeError):  # an older or newer torch, a build without it
        return False
    expected = F.gelu(F.linear(x.float(), weight.float(), bias.float()), approximate=approximate)
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    return fused.shape == expected.shape and torch.allclose(fused.float(), expected, rtol=tolerance, atol=tolerance)


def blocks_to_image(x: torch.Tensor, size: tuple[int, int], levels: int) -> torch.Tensor:
    """Values in block order after `levels` transposed convolutions of an (h, w) grid -> an image:
    (B, M, h * w * 4**levels) -> (B, M, h * 2**levels, w * 2**levels). Index (i, j, a1, b1, a2, b2, ...) is
    pixel (2**L i + 2**(L-1) a1 + ..., 2**L j + 2**(L-1) b1 + ...). One level at a time: each step moves
    blocks of contiguous values, where one permutation of all the axes would move single floats (4x slower)."""
    B, M, _ = x.shape
    h, w = size
    for level in range(levels):
        inner = 4 ** (levels - level - 1)  # values of one output pixel of this level still in block order
        x = x.reshape(B * M, h, w, 2, 2, inner).permute(0, 1, 3, 2, 4, 5)  # (B*M, h, a, w, b, inner)
        h, w = 2 * h, 2 * w  # pixel (2i + a, 2j + b)
    return x.reshape(B, M, h, w)


class FastMaskDecoder(MaskDecoder):
    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        """As MaskDecoder.forward: (B, 3 or 1, 4h, 4w) float32 logits and (B, 3 or 1) predicted IoUs."""
        wanted = slice(1, None) if multimask_output else slice(0, 1)
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.output_hypernetworks_mlps.parameters()):
            # training: every mask made, as in the plain decoder, so that every weight gets a gradient (zero for
            # the masks not returned); DistributedDataParallel wants one for each
            masks, iou_pred = self.predict_masks(
                image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
            )
            return masks[:, wanted].float(), iou_pred[:, wanted].float()
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, wanted
        )
        return masks.float(), iou_pred[:, wanted].float()  # thresholds and resizing want float32

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                      wanted: slice = slice(None)):
        """The masks of the mask tokens `wanted` (all four by default) and all four IoUs."""
        B = sparse_prompt_embeddings.shape[0]
        dtype = self.iou_token.weight.dtype  # a model converted after its embedding was made, or a part of it
        image_embeddings, image_pe = image_embeddings.to(dtype), image_pe.to(dtype)
        sparse_prompt_embeddings = sparse_prompt_embeddings.to(dtype)
        dense_prompt_embeddings = dense_prompt_embeddings.to(dtype)  # no copy in the same dtype: stays expanded
        if image_embeddings.shape[0] == 1 and (B == 1 or dense_prompt_embeddings.stride(0) == 0):
            dense_prompt_embeddings = dense_prompt_embeddings[:1]  # one image side for all B prompts
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)  # (5, C)
        tokens = torch.cat([output_tokens.expand(B, -1, -1), sparse_prompt_embeddings], dim=1)  # (B, 5 + N, C)
        src = image_embeddings + dense_prompt_embeddings  # (1 or B, C, h, w)
        _, _, h, w = src.shape
        keep = None
        if src.shape[0] == 1 and dense_prompt_embeddings.stride(-1) == dense_prompt_embeddings.stride(-2) == 0:
            # the no-mask embedding, expanded from `no_mask` (a view of a (1, C) weight): the image side depends
            # only on these, and the transformer keeps its first projections of it
            keep = (image_embeddings, dense_prompt_embeddings[:1, :, :1, :1], image_pe)
        transformer = self.transformer
        transformer_keeps = isinstance(transformer, FastTwoWayTransformer) and "forward" not in vars(transformer)
        hs, src = self.transformer(src, image_pe, tokens, **({"keep": keep} if transformer_keeps else {}))
        # hs (B, 5 + N, C), src (B, h*w, C): channels last
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]  # (B, 4, C)
        chosen = range(self.num_mask_tokens)[wanted]
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in chosen], dim=1
        )  # (B, M, C/8)
        if self._upscaling_as_built():
            # the upscaling, channels last, in block order: no pixel is moved until the masks are made
            conv1, norm, act1, conv2, act2 = self.output_upscaling
            x = transposed_conv_2x2(src, conv1)  # (B, 4 h w, C/4)
            channels = (conv1.out_channels,)  # a number, not x.shape: torch's older ONNX exporter traces shapes
            x = act1(F.layer_norm(x.float(), channels, norm.weight.float(), norm.bias.float(), norm.eps).to(x.dtype))
            x = transposed_conv_2x2(x, conv2, act2)  # (B, 16 h w, C/8)
            masks = hyper_in @ x.transpose(1, 2)  # (B, M, C/8) @ (B, C/8, 16 h w) -> (B, M, 16 h w)
            masks = blocks_to_image(masks, (h, w), levels=2)  # (B, M, 4h, 4w)
        else:  # the upscaling modules called, as in the plain decoder
            x = self.output_upscaling(src.transpose(1, 2).reshape(B, -1, h, w))  # (B, C/8, 4h, 4w)
            masks = (hyper_in @ x.flatten(2)).view(B, -1, *x.shape[-2:])  # (B, M, 4h, 4w)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])  # (B, 4)
        return masks, iou_pred

    def _upscaling_as_built(self) -> bool:
        """Two transposed convolutions of kernel and stride 2 around a LayerNorm2d, running as written. (isinstance,
        as a user's subclass fails as_built: torch's exporters trace through subclasses of each module.)"""
        layers = list(self.output_upscaling)
        return (len(layers) == 5 and as_built(self.output_upscaling) and isinstance(layers[1], LayerNorm2d)
                and all(isinstance(conv, torch.nn.ConvTranspose2d) and conv.kernel_size == conv.stride == (2, 2)
                        and conv.padding == (0, 0) and conv.output_padding == (0, 0) and conv.groups == 1
                        and conv.dilation == (1, 1) and conv.bias is not None for conv in layers[0::3]))
