"""The fast paths (sam_from_scratch.fast, notebook 12) compute what the plain model computes, with the same weights.

- speed_up swaps in subclasses that keep every parameter name, in place, once;

- fused attention (F.scaled_dot_product_attention, the relative-position bias as attn_mask, built in chunks
  of query rows) equals the plain attention within 1e-4 in float32;
- bfloat16 gives embeddings with cosine >= 0.99 and masks with IoU >= 0.95 against float32 (measured on the
  random small model: cosine ~0.9999, mask IoU ~0.99);
- no float64 tensor appears anywhere in a forward pass (Apple's MPS has no float64);
- batched calls equal one-by-one calls.

Most tests use a small random model (the `tiny` config), so they take seconds on a CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import platform
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sam_from_scratch.build import build_sam

from sam_from_scratch.config import CONFIGS
from sam_from_scratch.fast import FAST_CLASSES, compile_image_encoder, is_fast, speed_up
from sam_from_scratch.fast import attention as attention_module
from sam_from_scratch.fast.attention import FastEncoderAttention
from sam_from_scratch.modeling.image_encoder import Attention as EncoderAttention
from sam_from_scratch.modeling.transformer import Attention as DecoderAttention
from sam_from_scratch.predictor import SamPredictor

FP32_TOL = 1e-4
BF16_MIN_COSINE = 0.99
BF16_MIN_MASK_IOU = 0.95


def noisy_(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Add seeded noise to every weight, so that zero-initialised ones (relative positions) matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            tensor.add_(torch.randn(tensor.shape, generator=generator) * std)
    return module


# The tiny model's numbers with a pinned geometry: 96-pixel input, 12 x 12 embedding, windows of 6 (padded).
SMALL_CONFIG = dataclasses.replace(CONFIGS["tiny"], image_size=96, patch_size=8, window_size=5)


@pytest.fixture()
def plain_sam():
    """A random plain SAM with SMALL_CONFIG: windowed and global blocks, window padding (12 % 5 != 0)."""
    torch.manual_seed(0)
    return noisy_(build_sam(SMALL_CONFIG, fast=False), seed=1)


@pytest.fixture()
def small_sam(plain_sam):
    """plain_sam with the fast paths swapped in (a copy: plain_sam stays plain)."""
    return speed_up(copy.deepcopy(plain_sam))


def fast(module: torch.nn.Module) -> torch.nn.Module:
    """A sped-up copy of `module`."""
    return speed_up(copy.deepcopy(module))


def random_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) normalised images."""
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def point_prompts(n: int, size: int, seed: int = 0):
    """n prompts of two points each, in the model's input frame: coords (n, 2, 2), labels (n, 2)."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.rand(n, 2, 2, generator=generator) * size
    labels = torch.randint(0, 2, (n, 2), generator=generator, dtype=torch.int)
    return coords, labels


def decode(model, embedding, coords, labels, boxes=None, multimask_output=True):
    sparse, dense = model.prompt_encoder(points=(coords, labels), boxes=boxes, masks=None)
    return model.mask_decoder(embedding, model.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# ---- fused attention equals plain attention ----------------------------------------------------------


def test_speed_up_swaps_every_plain_module_and_keeps_the_parameter_names(plain_sam):
    names = {name: type(module) for name, module in plain_sam.named_modules()}
    keys = list(plain_sam.state_dict())
    model = speed_up(plain_sam)
    assert model is plain_sam and is_fast(model)
    for name, module in model.named_modules():
        assert type(module) is FAST_CLASSES.get(names[name], names[name]), name
    assert list(model.state_dict()) == keys


def test_the_patch_embedding_hands_on_its_tokens_in_one_block_of_memory(plain_sam):
    """The convolution's (B, C, h, w) output permuted is a strided view; the fast embedding copies it once, so
    that the residual stream (element-wise results keep their inputs' layout) is contiguous in every block."""
    images = random_images(2, plain_sam.image_encoder.img_size)
    with torch.no_grad():
        plain = plain_sam.image_encoder.patch_embed(images)
        model = speed_up(plain_sam)
        tokens = model.image_encoder.patch_embed(images)
        stream = model.image_encoder.blocks[0](tokens + model.image_encoder.pos_embed)
    assert not plain.is_contiguous()
    assert tokens.is_contiguous() and stream.is_contiguous()
    assert torch.equal(tokens, plain)


def test_speed_up_twice_changes_nothing(small_sam):
    before = [type(m) for m in small_sam.modules()]
    speed_up(small_sam)
    assert [type(m) for m in small_sam.modules()] == before


def test_the_package_builds_fast_models_and_the_plain_model_on_request():
    assert is_fast(build_sam(SMALL_CONFIG)) and not is_fast(build_sam(SMALL_CONFIG, fast=False))


def test_the_plain_model_has_no_fast_path_code():
    """The rooms of notebooks 02-08 hold plain PyTorch only: no fused attention, no dtype casts beyond the
    official model's one (points to float32 before their positional code)."""
    import inspect

    from sam_from_scratch import modeling

    official_casts = {("positional_encoding", ".float()"): 1}
    for name in ("image_encoder", "transformer", "mask_decoder", "prompt_encoder", "positional_encoding", "layers", "sam"):
        source = inspect.getsource(getattr(modeling, name))
        for fast_only in ("scaled_dot_product_attention", ".float()", ".to(", "stride(0)"):
            allowed = official_casts.get((name, fast_only), 0)
            assert source.count(fast_only) <= allowed, f"modeling/{name}.py uses {fast_only}"


BIAS_PATH_CASES = {
    "one mask": ("mask", 2**40),
    "mask in chunks of query rows": ("mask", 5 * 2 * 64 * 4096),
    "bias folded into q and k": ("folded", 2**40),
    "scores written out in chunks of query rows": ("scores", 2**40),
}


@pytest.mark.parametrize("how", list(BIAS_PATH_CASES))
def test_fused_global_attention_equals_plain_on_the_vit_b_grid(how):
    """A global block of vit_b attends over 64 x 64 tokens; its bias is too big to build at once."""
    torch.manual_seed(0)
    attention = noisy_(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(64, 64)), seed=2).eval()
    # 64 * 64 * 4096 elements per query row and head: 5 rows per chunk -> chunks of 5, ..., 5, 4 rows
    fused_attention = fast(attention)
    fused_attention.bias_path, fused_attention.max_mask_elements = BIAS_PATH_CASES[how]
    fused_attention.max_score_elements = 3 * 2 * 64 * 4096  # 3 query rows a chunk: 3, ..., 3, 1 rows
    x = torch.randn(1, 64, 64, 64)
    with torch.no_grad():
        fused = fused_attention(x)
        plain = attention(x)
    assert max_diff(fused, plain) <= FP32_TOL


def test_a_batch_on_the_cpu_gets_mask_chunks_as_tall_as_one_images(monkeypatch):
    """Three images whose masks come in chunks of 5 query rows each: the batch goes one image at a time, in
    chunks of 5 rows (not 1 row of all three), and gives the plain attention's result."""
    torch.manual_seed(0)
    attention = noisy_(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(64, 64)), seed=2).eval()
    fused_attention = fast(attention)
    fused_attention.bias_path, fused_attention.max_mask_elements = "mask", 5 * 2 * 64 * 4096
    calls = []
    sdpa = F.scaled_dot_product_attention

    def counted(q, k, v, **kwargs):
        calls.append(tuple(q.shape[:3]))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
    x = torch.randn(3, 64, 64, 64)
    with torch.no_grad():
        fused = fused_attention(x)
        plain = attention(x)
    assert max_diff(fused, plain) <= FP32_TOL
    assert len(calls) == 3 * 13  # 64 rows: 12 chunks of 5, one of 4, for each image
    assert set(calls) == {(1, 2, 5 * 64), (1, 2, 4 * 64)}


@pytest.mark.parametrize("path", FastEncoderAttention.BIAS_PATHS)
def test_fused_windowed_attention_equals_plain_for_a_batch_of_windows(path):
    torch.manual_seed(0)
    attention = noisy_(EncoderAttention(96, num_heads=3, use_rel_pos=True, input_size=(14, 14)), seed=3).eval()
    x = torch.randn(25, 14, 14, 96)  # 25 windows of 14 x 14 tokens
    with torch.no_grad():
        fused_attention = fast(attention)
        fused_attention.bias_path = path
        fused = fused_attention(x)
        plain = attention(x)
    assert max_diff(fused, plain) <= FP32_TOL


def test_fused_decoder_attention_equals_plain():
    torch.manual_seed(0)
    attention = noisy_(DecoderAttention(256, num_heads=8, downsample_rate=2), seed=4).eval()
    q, k = torch.randn(3, 7, 256), torch.randn(3, 4096, 256)
    with torch.no_grad():
        fused = fast(attention)(q=q, k=k, v=k)
        plain = attention(q=q, k=k, v=k)
    assert max_diff(fused, plain) <= FP32_TOL


def test_fast_decoder_attention_shares_a_batch_1_side_with_the_whole_batch():
    torch.manual_seed(0)
    attention = noisy_(DecoderAttention(64, num_heads=4, downsample_rate=2), seed=5).eval()
    q, k = torch.randn(5, 7, 64), torch.randn(1, 100, 64)
    with torch.no_grad():
        shared = fast(attention)(q=q, k=k, v=k)
        copies = attention(q=q, k=k.expand(5, -1, -1), v=k.expand(5, -1, -1))
    assert max_diff(shared, copies) <= FP32_TOL


def test_whole_fast_model_equals_plain_in_float32(plain_sam, small_sam):
    images = random_images(2, 96)
    coords, labels = point_prompts(4, 96)
    with torch.no_grad():
        fused_embedding = small_sam.image_encoder(images)
        fused_masks, fused_iou = decode(small_sam, fused_embedding[:1], coords, labels)
        plain_embedding = plain_sam.image_encoder(images)
        plain_masks, plain_iou = decode(plain_sam, plain_embedding[:1], coords, labels)
    assert max_diff(fused_embedding, plain_embedding) <= FP32_TOL
    assert max_diff(fused_masks, plain_masks) <= FP32_TOL
    assert max_diff(fused_iou, plain_iou) <= FP32_TOL


def embedding_of() -> torch.Tensor:
    """A random image embedding of SMALL_CONFIG's shape: (1, C, 12, 12)."""
    return torch.randn(1, SMALL_CONFIG.prompt_embed_dim, 12, 12)


def test_transposed_conv_as_a_matrix_product_equals_the_convolution():
    from sam_from_scratch.fast.decoder import blocks_to_image, transposed_conv_2x2

    conv = noisy_(torch.nn.ConvTranspose2d(32, 8, kernel_size=2, stride=2), seed=6)
    x = torch.randn(2, 32, 5, 7)
    with torch.no_grad():
        expected = conv(x)  # (2, 8, 10, 14)
        blocks = transposed_conv_2x2(x.flatten(2).transpose(1, 2), conv)  # (2, 35 * 4, 8) in block order
        got = blocks_to_image(blocks.transpose(1, 2), (5, 7), levels=1)
    assert got.shape == expected.shape and max_diff(got, expected) <= 1e-5


def test_two_transposed_convs_in_block_order_equal_the_convolutions():
    from sam_from_scratch.fast.decoder import blocks_to_image, transposed_conv_2x2

    first = noisy_(torch.nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2), seed=7)
    second = noisy_(torch.nn.ConvTranspose2d(8, 4, kernel_size=2, stride=2), seed=8)
    x = torch.randn(3, 16, 4, 6)
    with torch.no_grad():
        expected = second(first(x))  # (3, 4, 16, 24)
        blocks = transposed_conv_2x2(transposed_conv_2x2(x.flatten(2).transpose(1, 2), first), second)
        got = blocks_to_image(blocks.transpose(1, 2), (4, 6), levels=2)
    assert got.shape == expected.shape and max_diff(got, expected) <= 1e-5


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_transposed_conv_with_its_gelu_in_one_call_equals_the_two_calls(approximate):
    from sam_from_scratch.fast.decoder import fusable_gelu, transposed_conv_2x2

    conv = noisy_(torch.nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2), seed=10)
    gelu = torch.nn.GELU(approximate=approximate)
    x = torch.randn(3, 20, 16)  # (B, P, C): channels-last pixels
    with torch.no_grad():
        weight = conv.weight.permute(2, 3, 1, 0).reshape(-1, 16)
        # oneDNN's product with a GELU, in the torch this package installs on an x86-64 machine (as CI's)
        assert fusable_gelu(gelu, x, weight) or platform.machine().lower() not in ("x86_64", "amd64")
        fused, expected = transposed_conv_2x2(x, conv, gelu), gelu(transposed_conv_2x2(x, conv))
        assert fused.shape == expected.shape == (3, 80, 8) and max_diff(fused, expected) <= 1e-5
        conv_bf16, x_bf16 = copy.deepcopy(conv).bfloat16(), x.bfloat16()
        if fusable_gelu(gelu, x_bf16, weight.bfloat16()):  # where oneDNN computes in bfloat16 (AVX-512-BF16, AMX)
            fused = transposed_conv_2x2(x_bf16, conv_bf16, gelu)
            assert fused.dtype == torch.bfloat16 and max_diff(fused, expected) <= 0.05
        enabled, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False
        try:
            assert not fusable_gelu(gelu, x, weight)  # the user turned oneDNN off
        finally:
            torch.backends.mkldnn.enabled = enabled
    with torch.no_grad():
        assert not fusable_gelu(torch.nn.ReLU(), x, weight)  # another activation: called after the product
        assert not fusable_gelu(type("MyGELU", (torch.nn.GELU,), {})(), x, weight)  # a user's subclass: called
        assert not fusable_gelu(gelu, x.double(), weight.double())  # a dtype oneDNN's operator does not take
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not fusable_gelu(gelu, x, weight)
    assert not fusable_gelu(gelu, x, weight)  # gradients flowing: the plain calls, which torch differentiates


def test_cross_attentions_with_the_image_side_reassociated_equal_plain():
    torch.manual_seed(0)
    attention = noisy_(DecoderAttention(64, num_heads=4, downsample_rate=2), seed=9).eval()
    tokens, image, residual = torch.randn(3, 7, 64), torch.randn(3, 100, 64), torch.randn(3, 100, 64)
    with torch.no_grad():
        fast_attention = fast(attention)
        to_image = fast_attention.tokens_to_image(tokens, image, image + 1)
        from_image = fast_attention.image_to_tokens(image, tokens, tokens + 1, residual)
        from_projected = fast_attention.image_to_tokens(attention.q_proj(image), tokens, tokens + 1, residual,
                                                        projected=True)
        shared = fast_attention.image_to_tokens(image[:1], tokens, tokens + 1, residual[:1])
        one_prompt = fast_attention.image_to_tokens(image, tokens[:1], tokens[:1] + 1, residual)
        to_shared_image = fast_attention.tokens_to_image(tokens, image[:1], image[:1] + 1)
        one_prompt_to_image = fast_attention.tokens_to_image(tokens[:1], image, image + 1)
        plain_to_image = DecoderAttention.forward(attention, tokens, image, image + 1)
        plain_from_image = residual + DecoderAttention.forward(attention, image, tokens, tokens + 1)
        plain_shared = residual[:1] + DecoderAttention.forward(attention, image[:1].expand(3, -1, -1), tokens, tokens + 1)
        plain_one_prompt = residual + DecoderAttention.forward(attention, image, tokens[:1].expand(3, -1, -1),
                                                               tokens[:1].expand(3, -1, -1) + 1)
        plain_to_shared = DecoderAttention.forward(attention, tokens, image[:1].expand(3, -1, -1),
                                                   image[:1].expand(3, -1, -1) + 1)
        plain_one_to_image = DecoderAttention.forward(attention, tokens[:1].expand(3, -1, -1), image, image + 1)
    assert max_diff(to_image, plain_to_image) <= FP32_TOL
    assert max_diff(from_image, plain_from_image) <= FP32_TOL
    assert max_diff(from_projected, plain_from_image) <= FP32_TOL
    assert max_diff(shared, plain_shared) <= FP32_TOL
    assert max_diff(one_prompt, plain_one_prompt) <= FP32_TOL  # either side may have batch 1
    assert max_diff(to_shared_image, plain_to_shared) <= FP32_TOL
    assert max_diff(one_prompt_to_image, plain_one_to_image) <= FP32_TOL


def test_image_to_tokens_writes_into_a_residual_it_may_overwrite_only():
    attention = fast(noisy_(DecoderAttention(64, num_heads=4, downsample_rate=2), seed=9).eval())
    tokens, image, residual = torch.randn(3, 7, 64), torch.randn(3, 100, 64), torch.randn(3, 100, 64)
    with torch.no_grad():
        expected = attention.image_to_tokens(image, tokens, tokens + 1, residual)
        owned = residual.clone()
        got = attention.image_to_tokens(image, tokens, tokens + 1, owned, overwrite=True)
        assert got.data_ptr() == owned.data_ptr() and torch.equal(got, expected)  # the sum written in place
        shared = residual[:1].clone()  # one image side for three prompts: the sum needs its own tensor
        got = attention.image_to_tokens(image, tokens, tokens + 1, shared, overwrite=True)
        assert got.shape == (3, 100, 64) and torch.equal(shared, residual[:1])
    kept = residual.clone()
    got = attention.image_to_tokens(image, tokens, tokens + 1, kept, overwrite=True)  # gradients on: out of place
    assert got.data_ptr() != kept.data_ptr() and torch.equal(kept, residual)
    assert max_diff(got, expected) <= FP32_TOL


def test_the_second_block_overwrites_image_tokens_only_where_nobody_else_holds_them(small_sam, monkeypatch):
    """The second two-way block writes its sum into the first block's output, made in the same call; not where a
    hook may keep that output, nor where a replaced forward may hand on the caller's tensor (or lacks the keyword)."""
    transformer = small_sam.mask_decoder.transformer
    C = SMALL_CONFIG.prompt_embed_dim
    embedding, pe, tokens = torch.randn(1, C, 12, 12), torch.randn(1, C, 12, 12), torch.randn(1, 7, C)
    flags = []
    image_to_tokens = attention_module.FastDecoderAttention.image_to_tokens
    monkeypatch.setattr(attention_module.FastDecoderAttention, "image_to_tokens",
                        lambda self, *args, **kwargs: flags.append(kwargs.get("overwrite", False))
                        or image_to_tokens(self, *args, **kwargs))
    with torch.no_grad():
        expected = transformer(embedding, pe, tokens)
    assert len(transformer.layers) == 2 and flags == [False, True]  # as built: the second block writes in place
    saved = []  # a hook that keeps the first block's output
    handle = transformer.layers[0].register_forward_hook(lambda m, i, output: saved.append((output[1], output[1] + 0)))
    with torch.no_grad():
        got = transformer(embedding, pe, tokens)
    handle.remove()
    assert torch.equal(saved[0][0], saved[0][1]) and all(torch.equal(a, b) for a, b in zip(got, expected))
    before = embedding.clone()  # a first block that hands the image tokens on; a second with the plain signature
    transformer.layers[0].forward = lambda queries, keys, query_pe, key_pe: (queries, keys)
    second = transformer.layers[1].forward
    transformer.layers[1].forward = lambda queries, keys, query_pe, key_pe: second(queries, keys, query_pe, key_pe)
    with torch.no_grad():
        transformer(embedding, pe, tokens)
    assert torch.equal(embedding, before)


def test_a_models_own_postprocess_masks_is_called_once_with_the_whole_batch(small_sam):
    calls = []

    def own(masks, input_size, original_size):  # a size of its own: not the image's
        calls.append(tuple(masks.shape))
        return F.interpolate(masks, (5, 7))

    small_sam.postprocess_masks = own
    predictor = SamPredictor(small_sam)
    predictor.set_image(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    coords = predictor.transform.apply_coords_torch(torch.tensor([[[10.0, 10.0]], [[30.0, 20.0]]]), (40, 60))
    masks, _, low_res = predictor.predict_torch(coords, torch.ones(2, 1, dtype=torch.int))
    assert calls == [(2, 3, *low_res.shape[-2:])] and masks.shape == (2, 3, 5, 7)
    assert torch.equal(masks, F.interpolate(low_res, (5, 7)) > small_sam.mask_threshold)


def test_thresholded_masks_are_the_logits_above_the_models_threshold(small_sam):
    """The masks, thresholded one at a time, against the logits of the same call: a threshold that is not 0."""
    predictor = SamPredictor(small_sam)
    predictor.set_image(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    coords = predictor.transform.apply_coords_torch(torch.tensor([[[10.0, 10.0]], [[30.0, 20.0]]]), (40, 60))
    labels = torch.ones(2, 1, dtype=torch.int)
    logits, _, _ = predictor.predict_torch(coords, labels, return_logits=True)
    small_sam.mask_threshold = float(logits.median())  # about half the pixels on either side
    masks, _, _ = predictor.predict_torch(coords, labels)
    assert masks.dtype == torch.bool and torch.equal(masks, logits > small_sam.mask_threshold)
    assert 0.2 < masks.float().mean() < 0.8
    # a float64 threshold just under a logit's value: torch compares in float32, where the two are equal
    value = float(logits[0, 0, 5, 5])
    small_sam.mask_threshold = np.float64(value) - abs(value) * 1e-12
    masks, _, _ = predictor.predict_torch(coords, labels)
    assert not masks[0, 0, 5, 5] and torch.equal(masks, logits > small_sam.mask_threshold)


@pytest.mark.parametrize("multimask_output", [True, False])
def test_fast_decoder_gives_the_masks_asked_for_as_plain(plain_sam, small_sam, multimask_output):
    embedding = embedding_of()
    coords, labels = point_prompts(3, 96)
    with torch.no_grad():
        fused = decode(small_sam, embedding, coords, labels, multimask_output=multimask_output)
        plain = decode(plain_sam, embedding, coords, labels, multimask_output=multimask_output)
    for a, b in zip(fused, plain):
        assert a.shape == b.shape and max_diff(a, b) <= FP32_TOL


def test_the_kept_first_layer_follows_every_change_of_what_it_is_made_of(plain_sam, small_sam):
    """Clicks reuse the first block's image projections; a new embedding, the same embedding changed in
    place, a changed weight or no-mask embedding must each give the plain model's answer, not the kept one."""
    coords, labels = point_prompts(1, 96, seed=3)
    first, second = embedding_of(), embedding_of()

    def check(embedding):
        with torch.no_grad():
            fused = decode(small_sam, embedding, coords, labels)
            plain = decode(plain_sam, embedding, coords, labels)
        assert max_diff(fused[0], plain[0]) <= FP32_TOL and max_diff(fused[1], plain[1]) <= FP32_TOL

    check(first)
    kept = small_sam.mask_decoder.transformer.__dict__["_kept"]
    check(first)  # the same click again: from the kept projections
    assert small_sam.mask_decoder.transformer.__dict__["_kept"] is kept
    check(second)
    assert small_sam.mask_decoder.transformer.__dict__["_kept"] is not kept
    with torch.no_grad():
        second.mul_(-1)  # in place: same tensor, new values
    check(second)
    for model in (small_sam, plain_sam):  # the same change to a weight of the first block in both models
        with torch.no_grad():
            model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.mul_(1.5)
            model.prompt_encoder.no_mask_embed.weight.add_(0.3)
    check(second)


def test_a_block_whose_forward_was_replaced_still_answers_like_plain(plain_sam, small_sam):
    """Notebook 06 swaps a block's forward for one with the plain signature to switch the positional codes off."""
    coords, labels = point_prompts(1, 96, seed=4)
    embedding = embedding_of()
    for model in (small_sam, plain_sam):
        block = model.mask_decoder.transformer.layers[0]
        block.forward = (lambda f: lambda queries, keys, query_pe, key_pe: f(queries, keys, query_pe * 0, key_pe * 0))(
            block.forward)
    with torch.no_grad():
        fused = decode(small_sam, embedding, coords, labels)
        plain = decode(plain_sam, embedding, coords, labels)
    assert max_diff(fused[0], plain[0]) <= FP32_TOL and max_diff(fused[1], plain[1]) <= FP32_TOL


@pytest.mark.parametrize("where", ["final attention", "first block's token -> image", "second block's image -> token"])
def test_an_attention_whose_forward_was_replaced_is_called(plain_sam, small_sam, where):
    """Notebook 06 switches the final attention off by replacing its forward; the fast path must call it."""
    coords, labels = point_prompts(1, 96, seed=5)
    embedding = embedding_of()
    for model in (small_sam, plain_sam):
        transformer = model.mask_decoder.transformer
        module = {"final attention": transformer.final_attn_token_to_image,
                  "first block's token -> image": transformer.layers[0].cross_attn_token_to_image,
                  "second block's image -> token": transformer.layers[1].cross_attn_image_to_token}[where]
        module.forward = lambda q, k, v: torch.zeros_like(q)
    with torch.no_grad():
        fused = decode(small_sam, embedding, coords, labels)
        plain = decode(plain_sam, embedding, coords, labels)
    assert max_diff(fused[0], plain[0]) <= FP32_TOL and max_diff(fused[1], plain[1]) <= FP32_TOL


def test_nothing_is_kept_while_gradients_flow(small_sam):
    coords, labels = point_prompts(2, 96)
    masks, _ = decode(small_sam, embedding_of(), coords, labels)
    masks.sum().backward()
    assert "_kept" not in small_sam.mask_decoder.transformer.__dict__
    assert small_sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.grad is not None


def test_a_model_built_under_inference_mode_predicts_like_plain():
    # Tensors made under torch.inference_mode have no version counter: the kept positional codes and image
    # side, which watch it, must step aside rather than fail.
    with torch.inference_mode():
        torch.manual_seed(0)
        plain = noisy_(build_sam(SMALL_CONFIG, fast=False), seed=1)
        fast_model = speed_up(copy.deepcopy(plain))
        predictor = SamPredictor(fast_model, dtype="float32")
    image = np.random.default_rng(0).integers(0, 256, (70, 96, 3), dtype=np.uint8)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(np.array([[40.0, 30.0]]), np.array([1]))
    reference = SamPredictor(plain, dtype="float32")
    reference.set_image(image)
    _, plain_scores, _ = reference.predict(np.array([[40.0, 30.0]]), np.array([1]))
    assert masks.shape == (3, 70, 96)
    np.testing.assert_allclose(scores, plain_scores, atol=1e-5)


# ---- the fast decoder follows what the user changes ----------------------------------------------------


def same_answer(fast_model, plain_model, embedding, coords, labels, dense=None) -> None:
    """The fast and the plain decoder give the same masks and IoUs (dense: the dense prompt, if not no-mask)."""
    with torch.no_grad():
        answers = []
        for model in (fast_model, plain_model):
            sparse, no_mask = model.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            answers.append(model.mask_decoder(embedding, model.prompt_encoder.get_dense_pe(), sparse,
                                              no_mask if dense is None else dense, True))
    (fused_masks, fused_iou), (masks, iou) = answers
    assert max_diff(fused_masks, masks) <= FP32_TOL and max_diff(fused_iou, iou) <= FP32_TOL


@pytest.mark.parametrize("change", ["a first-block weight", "the no-mask embedding", "the positional matrix",
                                    "a fused optimizer step"])
def test_changes_that_leave_no_version_behind_are_seen(plain_sam, small_sam, change):
    """Writes through .data and fused optimizer steps change a weight's values without its version counter: the
    kept first-block side and positional code must still be made again."""
    coords, labels = point_prompts(1, 96, seed=6)
    embedding = embedding_of()
    same_answer(small_sam, plain_sam, embedding, coords, labels)  # the side is kept now
    for model in (small_sam, plain_sam):
        if change == "a first-block weight":
            model.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.data.mul_(3)
        elif change == "the no-mask embedding":
            model.prompt_encoder.no_mask_embed.weight.data.add_(1)
        elif change == "the positional matrix":
            model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.data.mul_(2)
        elif change == "a fused optimizer step":
            decoder = model.mask_decoder.transformer.layers[0]
            optimizer = torch.optim.AdamW(decoder.parameters(), lr=0.1, fused=True)
            for parameter in decoder.parameters():
                parameter.grad = torch.ones_like(parameter)
            optimizer.step()
    same_answer(small_sam, plain_sam, embedding, coords, labels)


@pytest.mark.parametrize("multimask_output", [True, False])
def test_every_decoder_weight_gets_a_gradient_as_in_plain(plain_sam, small_sam, multimask_output):
    """DistributedDataParallel (find_unused_parameters=False) wants a gradient for every weight: the masks not
    returned and the key biases (which the softmax ignores) get zeros in the plain decoder, so here too."""
    coords, labels = point_prompts(2, 96, seed=14)
    embedding = embedding_of()
    grads = []
    for model in (small_sam, plain_sam):
        masks, iou = decode(model, embedding, coords, labels, multimask_output=multimask_output)
        (masks.sum() + iou.sum()).backward()
        grads.append({name: p.grad for name, p in model.mask_decoder.named_parameters()})
    fused, plain = grads
    assert [name for name, grad in fused.items() if grad is None] == []
    for name, grad in plain.items():
        assert torch.allclose(fused[name], grad, rtol=1e-3, atol=1e-4), name


class LoRALinear(torch.nn.Linear):
    """A user's low-rank adapter: the layer's own forward plus x A B (A, B trained)."""

    def __init__(self, linear: torch.nn.Linear, rank: int = 2):
        super().__init__(linear.in_features, linear.out_features)
        self.load_state_dict(linear.state_dict())
        generator = torch.Generator().manual_seed(linear.out_features)
        self.lora_a = torch.nn.Parameter(torch.randn(linear.in_features, rank, generator=generator) * 0.3)
        self.lora_b = torch.nn.Parameter(torch.randn(rank, linear.out_features, generator=generator) * 0.3)

    def forward(self, x):
        return super().forward(x) + x @ self.lora_a @ self.lora_b


def add_lora(model) -> list[torch.nn.Parameter]:
    """LoRA on q_proj and v_proj of every attention in the decoder's transformer; returns the adapters' weights."""
    adapters = []
    for module in list(model.mask_decoder.transformer.modules()):
        if isinstance(module, DecoderAttention):
            for name in ("q_proj", "v_proj"):
                setattr(module, name, LoRALinear(getattr(module, name)))
                adapters += [getattr(module, name).lora_a, getattr(module, name).lora_b]
    return adapters


def test_a_users_layer_in_the_decoder_runs_and_trains(plain_sam, small_sam):
    """A LoRA layer where a projection was: the fast paths must call it (not read its base weight), and its
    weights must get gradients, as in the plain model."""
    coords, labels = point_prompts(2, 96, seed=7)
    embedding = embedding_of()
    same_answer(small_sam, plain_sam, embedding, coords, labels)  # a side kept before the layers change
    adapters = {id(model): add_lora(model) for model in (small_sam, plain_sam)}
    same_answer(small_sam, plain_sam, embedding, coords, labels)
    for model in (small_sam, plain_sam):
        masks, _ = decode(model, embedding, coords, labels)
        masks.sum().backward()
    fast_grads = [p.grad for p in adapters[id(small_sam)]]
    assert all(g is not None for g in fast_grads)
    for fused, plain in zip(fast_grads, (p.grad for p in adapters[id(plain_sam)])):
        assert torch.allclose(fused, plain, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("where", ["final attention", "second block's image -> token", "first block's key projection",
                                   "first transposed convolution", "upscaling's LayerNorm2d"])
def test_hooks_in_the_decoder_run_even_when_added_after_a_click(plain_sam, small_sam, where):
    coords, labels = point_prompts(1, 96, seed=8)
    embedding = embedding_of()
    same_answer(small_sam, plain_sam, embedding, coords, labels)  # the side is kept now
    calls = []
    for model in (small_sam, plain_sam):
        transformer, upscaling = model.mask_decoder.transformer, model.mask_decoder.output_upscaling
        module = {"final attention": transformer.final_attn_token_to_image,
                  "second block's image -> token": transformer.layers[1].cross_attn_image_to_token,
                  "first block's key projection": transformer.layers[0].cross_attn_token_to_image.k_proj,
                  "first transposed convolution": upscaling[0], "upscaling's LayerNorm2d": upscaling[1]}[where]
        module.register_forward_hook(lambda module, inputs, output: calls.append(module) or output * 0.5)
    same_answer(small_sam, plain_sam, embedding, coords, labels)
    assert len(calls) == 2  # once in each model


def test_the_plain_attention_or_a_subclass_of_it_can_be_put_into_a_fast_model(plain_sam, small_sam):
    """Notebook 06 records attention maps with its own attention class; the fast blocks must take it."""
    coords, labels = point_prompts(3, 96, seed=9)
    embedding = embedding_of()
    transformer = small_sam.mask_decoder.transformer
    for name, module in list(transformer.named_modules()):
        if isinstance(module, DecoderAttention) and "cross" in name or name == "final_attn_token_to_image":
            downsample = module.embedding_dim // module.internal_dim
            plain = DecoderAttention(module.embedding_dim, module.num_heads, downsample)
            plain.load_state_dict(module.state_dict())
            parent = transformer.get_submodule(name.rpartition(".")[0]) if "." in name else transformer
            setattr(parent, name.rpartition(".")[2], plain)
    assert type(transformer.final_attn_token_to_image) is DecoderAttention  # the plain class, not the fast one
    same_answer(small_sam, plain_sam, embedding, coords, labels)


def test_each_row_of_a_table_of_no_mask_embeddings_is_its_own_image_side(plain_sam, small_sam):
    """Dense prompts that are slices of one tensor (a learned no-mask embedding per task) must not share a side."""
    coords, labels = point_prompts(1, 96, seed=10)
    embedding = embedding_of()
    table = torch.randn(3, SMALL_CONFIG.prompt_embed_dim)
    for row in range(3):
        dense = table[row].reshape(1, -1, 1, 1).expand(1, -1, 12, 12)
        same_answer(small_sam, plain_sam, embedding, coords, labels, dense=dense)


def test_a_first_click_under_autocast_leaves_the_next_click_as_plain(plain_sam, small_sam):
    """Nothing made under the caller's autocast (bfloat16 projections, a rounded positional code) is kept."""
    coords, labels = point_prompts(1, 96, seed=11)
    embedding = embedding_of()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        masks, _ = decode(small_sam, embedding, coords, labels)
    assert masks.dtype == torch.float32
    same_answer(small_sam, plain_sam, embedding, coords, labels)
    with torch.no_grad():
        assert max_diff(small_sam.prompt_encoder.get_dense_pe(), plain_sam.prompt_encoder.get_dense_pe()) <= 1e-5


def test_the_positional_code_handed_out_and_changed_by_its_caller_is_made_again(plain_sam, small_sam):
    coords, labels = point_prompts(1, 96, seed=12)
    embedding = embedding_of()
    same_answer(small_sam, plain_sam, embedding, coords, labels)
    with torch.no_grad():
        small_sam.prompt_encoder.get_dense_pe().add_(1.0)  # the caller's in-place change of what it was given
    same_answer(small_sam, plain_sam, embedding, coords, labels)


def test_copies_of_a_fast_model_leave_the_kept_image_side_behind(small_sam):
    import pickle

    coords, labels = point_prompts(1, 96)
    with torch.no_grad():
        decode(small_sam, embedding_of(), coords, labels)
    assert "_kept" in vars(small_sam.mask_decoder.transformer)
    for copied in (copy.deepcopy(small_sam), pickle.loads(pickle.dumps(small_sam))):
        assert "_kept" not in vars(copied.mask_decoder.transformer)
        assert "_dense_pe" not in vars(copied.prompt_encoder)


def test_a_decoder_converted_alone_takes_the_rest_in_float32(plain_sam, small_sam):
    """speed_up(model.mask_decoder, torch.bfloat16), or a model converted while a predictor holds float32
    features: the decoder casts what it is given."""
    coords, labels = point_prompts(2, 96, seed=13)
    embedding = embedding_of()
    speed_up(small_sam.mask_decoder, "bfloat16")
    with torch.no_grad():
        masks, iou = decode(small_sam, embedding, coords, labels)
        plain_masks, plain_iou = decode(plain_sam, embedding, coords, labels)
    assert masks.dtype == torch.float32 and mask_iou(masks > 0, plain_masks > 0) >= BF16_MIN_MASK_IOU


# ---- reduced precision -------------------------------------------------------------------------------


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def test_bfloat16_model_agrees_with_float32(small_sam):
    images = random_images(1, 96)
    coords, labels = point_prompts(6, 96)
    boxes = torch.tensor([[10.0, 10.0, 60.0, 80.0]]).expand(6, 4)
    with torch.no_grad():
        embedding = small_sam.image_encoder(images)
        masks, iou = decode(small_sam, embedding, coords, labels, boxes)
        speed_up(small_sam, torch.bfloat16)
        embedding_bf16 = small_sam.image_encoder(images)
        masks_bf16, iou_bf16 = decode(small_sam, embedding_bf16, coords, labels, boxes)
    assert embedding_bf16.dtype == torch.bfloat16
    assert masks_bf16.dtype == torch.float32 and iou_bf16.dtype == torch.float32, "logits leave in float32"
    cosine = F.cosine_similarity(embedding_bf16.float().flatten(), embedding.flatten(), dim=0).item()
    assert cosine >= BF16_MIN_COSINE
    for a, b in zip((masks > 0).flatten(0, 1), (masks_bf16 > 0).flatten(0, 1)):
        assert mask_iou(a, b) >= BF16_MIN_MASK_IOU


def test_bfloat16_model_runs_end_to_end_and_postprocesses_in_float32(small_sam):
    speed_up(small_sam, torch.bfloat16)
    record = dict(image=torch.rand(3, 96, 70) * 255, original_size=(130, 96), boxes=torch.tensor([[5.0, 5.0, 60.0, 80.0]]))
    with torch.no_grad():
        out = small_sam([record], multimask_output=True)[0]
    assert out["masks"].shape == (1, 3, 130, 96) and out["masks"].dtype == torch.bool
    assert out["low_res_logits"].dtype == torch.float32
    assert small_sam.postprocess_masks(out["low_res_logits"].bfloat16(), (96, 70), (130, 96)).dtype == torch.float32


def test_positional_codes_of_a_bfloat16_model_are_computed_in_float32(small_sam):
    """bfloat16 keeps 8 bits of mantissa: the coordinate 700.3 would become 700, and its code would change."""
    import copy

    speed_up(small_sam, torch.bfloat16)
    layer = small_sam.prompt_encoder.pe_layer
    layer_fp32 = copy.deepcopy(layer).float()  # the same (bf16-rounded) frequencies, kept in float32
    coords = torch.tensor([[[700.3, 12.9]]])
    code = layer.forward_with_coords(coords, (1024, 1024))
    assert code.dtype == torch.bfloat16
    torch.testing.assert_close(code, layer_fp32.forward_with_coords(coords, (1024, 1024)).bfloat16(), rtol=0, atol=0)


def test_from_pretrained_converts_to_the_requested_dtype(random_vit_b_checkpoint):
    from sam_from_scratch.build import from_pretrained

    model = from_pretrained(str(random_vit_b_checkpoint), device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_from_pretrained_rejects_an_unsupported_dtype_naming_the_argument():
    from sam_from_scratch.build import from_pretrained
    from sam_from_scratch.errors import SamInputError

    with pytest.raises(SamInputError, match=r"^dtype: expected torch\.float32, torch\.bfloat16 or torch\.float16 \(or "
                                            r"their names\), got torch\.int8\.$"):
        from_pretrained("tiny", device="cpu", dtype=torch.int8)
    with pytest.raises(SamInputError, match=r"^dtype: expected torch\.float32, torch\.bfloat16 or torch\.float16 \(or their "
                                            r"names\), got 'float64'\.$"):
        from_pretrained("tiny", device="cpu", dtype="float64")


def test_from_pretrained_takes_a_dtype_by_name_as_the_predictor_does():
    from sam_from_scratch.build import from_pretrained

    model = from_pretrained("tiny", device="cpu", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


# ---- no float64 --------------------------------------------------------------------------------------


class Float64Detector(TorchDispatchMode):
    """Records every operator that produces a float64 tensor while active.

    One operator is allowed: `lift_fresh`, the zero-copy CPU view of a caller's float64 numpy array that
    `torch.as_tensor(array, dtype=torch.float, device=...)` converts right away (it never reaches a device).
    """

    def __init__(self) -> None:
        super().__init__()
        self.offenders: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is not torch.ops.aten.lift_fresh.default and any(
            isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tree_leaves(out)
        ):
            self.offenders.append(str(func))
        return out


def test_the_float64_detector_catches_a_float64_tensor():
    with Float64Detector() as detector:
        torch.ones(2).double() * 2
    assert detector.offenders


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_float64_tensor_in_a_forward_pass(small_sam, dtype):
    speed_up(small_sam, dtype)
    batch = [
        dict(image=torch.rand(3, 96, 70) * 255, original_size=(130, 96),
             point_coords=torch.tensor([[[10.0, 20.0], [50.0, 60.0]]]), point_labels=torch.tensor([[1, 0]])),
        dict(image=torch.rand(3, 96, 96) * 255, original_size=(96, 96), boxes=torch.tensor([[5.0, 5.0, 60.0, 80.0]]),
             mask_inputs=torch.randn(1, 1, 48, 48)),
    ]
    with torch.no_grad(), Float64Detector() as detector:
        small_sam(batch, multimask_output=True)
    assert detector.offenders == []


def test_no_float64_tensor_in_the_predictor(small_sam):
    from sam_from_scratch.predictor import SamPredictor

    predictor = SamPredictor(small_sam)
    image = np.random.default_rng(0).integers(0, 256, size=(130, 96, 3), dtype=np.uint8)
    with Float64Detector() as detector:
        predictor.set_image(image)
        predictor.predict(point_coords=np.array([[30.0, 40.0]]), point_labels=np.array([1]),
                          box=np.array([5, 5, 80, 120]))
    assert detector.offenders == []


# ---- batching ----------------------------------------------------------------------------------------


def test_images_encoded_in_one_batch_equal_one_by_one(small_sam):
    images = random_images(3, 96)
    with torch.no_grad():
        batched = small_sam.image_encoder(images)
        one_by_one = torch.cat([small_sam.image_encoder(image[None]) for image in images])
    assert max_diff(batched, one_by_one) <= FP32_TOL


def test_prompts_decoded_in_one_batch_equal_one_by_one(small_sam):
    coords, labels = point_prompts(8, 96)
    with torch.no_grad():
        embedding = small_sam.image_encoder(random_images(1, 96))
        masks, iou = decode(small_sam, embedding, coords, labels)
        singles = [decode(small_sam, embedding, coords[i : i + 1], labels[i : i + 1]) for i in range(8)]
    assert max_diff(masks, torch.cat([m for m, _ in singles])) <= FP32_TOL
    assert max_diff(iou, torch.cat([i for _, i in singles])) <= FP32_TOL


def test_predictor_predict_torch_batch_equals_single_predict_calls(small_sam):
    """The official API already batches prompts (predict_torch): 64 prompts in one call, as the AMG does."""
    from sam_from_scratch.predictor import SamPredictor

    predictor = SamPredictor(small_sam)
    image = np.random.default_rng(1).integers(0, 256, size=(130, 96, 3), dtype=np.uint8)
    predictor.set_image(image)
    points = np.random.default_rng(2).uniform(0, 96, size=(64, 2))
    coords = predictor.transform.apply_coords_torch(torch.as_tensor(points, dtype=torch.float), image.shape[:2])
    labels = torch.ones(64, 1, dtype=torch.int)
    masks, iou, low_res = predictor.predict_torch(coords[:, None, :], labels, multimask_output=True, return_logits=True)
    for i in (0, 17, 63):
        single_masks, single_iou, single_low_res = predictor.predict(
            point_coords=points[i : i + 1], point_labels=np.ones(1), multimask_output=True, return_logits=True
        )
        assert max_diff(masks[i], torch.as_tensor(single_masks)) <= FP32_TOL
        assert max_diff(iou[i], torch.as_tensor(single_iou)) <= FP32_TOL


# ---- torch.compile -----------------------------------------------------------------------------------


def test_compile_falls_back_to_eager_with_a_warning_when_compiling_fails(small_sam):
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    images = random_images(1, 96)
    with torch.no_grad():
        expected = small_sam.image_encoder(images)
        with pytest.warns(RuntimeWarning, match="eager"):
            compile_image_encoder(small_sam, backend=broken_backend)
        got = small_sam.image_encoder(images)
    assert small_sam.image_encoder.compile_failed
    assert max_diff(got, expected) == 0.0


def test_the_mask_in_chunks_traces_as_one_graph():
    """torch.compile sees the whole chunked attention: a graph break there splits the encoder into many
    graphs, each block's MLP recompiled until the recompile limit, after which the rest runs eager."""
    attention = fast(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(16, 16))).eval()
    attention.max_mask_elements = 3 * 2 * 16 * 256  # chunks of 3 query rows: the last one has 1 (16 = 5 * 3 + 1)
    with torch.no_grad():
        explanation = torch._dynamo.explain(attention)(torch.randn(1, 16, 16, 64))
    assert attention._rows_per_chunk(torch.zeros(1, 2, 256, 32), 16) == 3
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]


def test_bfloat16_attention_on_the_cpu_traces_as_one_graph_without_warnings():
    """The choice of path reads the CPU's flags once; torch.compile takes the answer as a constant, so that the
    read neither breaks the graph nor warns."""
    attention = fast(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(16, 16))).eval()
    attention.to(torch.bfloat16).max_mask_elements = 3 * 2 * 16 * 256
    torch._dynamo.reset()
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        explanation = torch._dynamo.explain(attention)(torch.randn(2, 16, 16, 64, dtype=torch.bfloat16))
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]
    assert not [w for w in caught if issubclass(w.category, UserWarning)], [str(w.message) for w in caught]


def test_compiled_encoder_on_the_cpu_equals_eager(small_sam):
    """Inductor's C++ code for the whole encoder (the mask in chunks included) gives the eager result."""
    for block in small_sam.image_encoder.blocks:  # the global blocks' masks in chunks of 5 rows (of 12 x 12)
        block.attn.max_mask_elements = 5 * block.attn.num_heads * 12 * 144
    assert_compiling_keeps_the_embedding(small_sam, random_images(1, 96))


def assert_compiling_keeps_the_embedding(sam, images):
    """Compiling `sam`'s encoder in place succeeds and gives the eager embedding of `images` in fp32."""
    with torch.no_grad():
        expected = sam.image_encoder(images)
        compile_image_encoder(sam)
        got = sam.image_encoder(images)
    assert not sam.image_encoder.compile_failed
    assert max_diff(got, expected) <= FP32_TOL


def test_compiling_keeps_the_official_state_dict_keys(small_sam):
    keys = list(small_sam.state_dict())
    compile_image_encoder(small_sam)
    assert list(small_sam.state_dict()) == keys


# ---- GPU ---------------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_cuda_agrees_with_float32(small_sam, dtype):
    small_sam.to("cuda")
    images = random_images(1, 96).cuda()
    with torch.no_grad():
        reference = small_sam.image_encoder(images)
        speed_up(small_sam, dtype)
        embedding = small_sam.image_encoder(images)
    cosine = F.cosine_similarity(embedding.float().flatten(), reference.flatten(), dim=0).item()
    assert cosine >= BF16_MIN_COSINE


def test_global_attention_in_bfloat16_on_the_cpu_writes_the_scores_out_and_agrees_with_float32(monkeypatch):
    """The default path of a global block in bfloat16 on a CPU without AMX, against the plain attention in
    float32."""
    monkeypatch.setattr(attention_module, "cpu_has_amx", lambda: False)
    torch.manual_seed(0)
    attention = noisy_(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(64, 64)), seed=2).eval()
    x = torch.randn(1, 64, 64, 64)
    with torch.no_grad():
        plain = attention(x)
        half = fast(attention).to(torch.bfloat16)
        half.max_mask_elements = half.max_score_elements = 3 * 2 * 64 * 4096  # 3 query rows a chunk
        q = torch.zeros(1, 2, 64 * 64, 32, dtype=torch.bfloat16, device="meta")
        assert half.bias_path_for(q, (64, 64)) == "scores"
        got = half(x.to(torch.bfloat16)).float()
    assert F.cosine_similarity(got.flatten(), plain.flatten(), dim=0).item() >= 0.999


@pytest.mark.parametrize("size", [(64, 64), (14, 14)], ids=["global", "windowed"])
def test_attention_in_bfloat16_on_a_cpu_with_amx_folds_the_bias_and_agrees_with_float32(monkeypatch, size):
    """On a CPU with AMX the fused kernel's products run on its tiles: both kinds of block fold the bias
    into q and k in bfloat16 (this runs on any CPU, only slower without AMX)."""
    monkeypatch.setattr(attention_module, "cpu_has_amx", lambda: True)
    torch.manual_seed(0)
    attention = noisy_(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=size), seed=2).eval()
    x = torch.randn(2, *size, 64)
    with torch.no_grad():
        plain = attention(x)
        half = fast(attention).to(torch.bfloat16)
        q = torch.zeros(2, 2, size[0] * size[1], 32, dtype=torch.bfloat16, device="meta")
        assert half.bias_path_for(q, size) == "folded"
        assert half.bias_path_for(q.float(), size) == "mask"  # float32 keeps the mask
        got = half(x.to(torch.bfloat16)).float()
    assert F.cosine_similarity(got.flatten(), plain.flatten(), dim=0).item() >= 0.999


@pytest.mark.cuda
@pytest.mark.parametrize("path", FastEncoderAttention.BIAS_PATHS)
def test_each_bias_path_on_cuda_equals_plain_attention(path):
    """On CUDA each path gives the plain attention's result in fp32, and agrees with it in bf16."""
    torch.manual_seed(0)
    attention = noisy_(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(64, 64)), seed=2).eval()
    x = torch.randn(2, 64, 64, 64)
    with torch.no_grad():
        plain = attention(x)
        fused_attention = fast(attention).cuda()
        fused_attention.bias_path = path
        fused_attention.max_mask_elements_cuda = 5 * 2 * 2 * 64 * 4096  # chunks of 5 query rows
        fused = fused_attention(x.cuda()).cpu()
        half = fused_attention.to(torch.bfloat16)(x.cuda().to(torch.bfloat16)).float().cpu()
    assert max_diff(fused, plain) <= 1e-4
    assert F.cosine_similarity(half.flatten(), plain.flatten(), dim=0).item() >= BF16_MIN_COSINE


class _QueriesOnCuda:
    """What bias_path_for reads of the queries (device, shape, dtype), without a GPU."""

    is_cuda = True

    def __init__(self, shape, dtype):
        self.shape, self.dtype = torch.Size(shape), dtype


def test_the_default_bias_path_by_device_dtype_and_size(monkeypatch):
    """When the mask would come in chunks: folded for half precision on a GPU, the scores written out for
    bfloat16 on a CPU without AMX; the mask otherwise. (With AMX: the test above.)"""
    monkeypatch.setattr(attention_module, "cpu_has_amx", lambda: False)
    attention = fast(EncoderAttention(64, num_heads=2, use_rel_pos=True, input_size=(64, 64)))
    assert attention.bias_path is None
    shape = (8, 2, 64 * 64, 32)  # 2**28 elements / (8 * 2 * 64 * 4096) = 64 rows a chunk: the whole mask
    assert attention.bias_path_for(_QueriesOnCuda(shape, torch.bfloat16), (64, 64)) == "mask"
    attention.max_mask_elements_cuda = 2**25  # now 8 rows a chunk
    assert attention.bias_path_for(_QueriesOnCuda(shape, torch.bfloat16), (64, 64)) == "folded"
    assert attention.bias_path_for(_QueriesOnCuda(shape, torch.float16), (64, 64)) == "folded"
    assert attention.bias_path_for(_QueriesOnCuda(shape, torch.float32), (64, 64)) == "mask"
    on_cpu = torch.zeros(shape, dtype=torch.bfloat16, device="meta")
    assert not on_cpu.is_cuda and attention.bias_path_for(on_cpu, (64, 64)) == "scores"  # 8 rows a chunk
    attention.max_mask_elements = 2**28  # the whole mask at once
    assert attention.bias_path_for(on_cpu, (64, 64)) == "mask"
    attention.max_mask_elements = 2**25
    assert attention.bias_path_for(on_cpu.float(), (64, 64)) == "mask"
    windows = torch.zeros(25 * 8, 2, 14 * 14, 32, dtype=torch.bfloat16, device="meta")  # 25 windows a picture
    assert attention.bias_path_for(windows, (14, 14)) == "mask"
    attention.bias_path = "folded"
    assert attention.bias_path_for(on_cpu, (64, 64)) == "folded"


@pytest.mark.cuda
def test_compiled_encoder_on_cuda_equals_eager(small_sam, monkeypatch):
    # cuDNN runs float32 convolutions (the patch embedding) in TF32 by default: relative error ~4e-4 against
    # float64 (H100, torch 2.11), and compiled and eager code may pick different algorithms. Compare in true fp32.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert_compiling_keeps_the_embedding(small_sam.to("cuda"), random_images(1, 96).cuda())


@pytest.mark.parametrize("path", FastEncoderAttention.BIAS_PATHS)
def test_chunked_fused_attention_trains_like_the_plain_path(path):
    """The chunked bias of the fast path must stay differentiable (fine-tuning at full size uses it)."""
    from sam_from_scratch.modeling.image_encoder import Attention

    torch.manual_seed(0)
    plain = Attention(64, num_heads=2, use_rel_pos=True, input_size=(16, 16))
    with torch.no_grad():
        plain.rel_pos_h.normal_()
        plain.rel_pos_w.normal_()
    fused = fast(plain)
    fused.bias_path = path
    fused.max_mask_elements = fused.max_score_elements = 2**12  # small enough to force several chunks
    x = torch.randn(1, 16, 16, 64)
    grads = []
    for attention in (fused, plain):
        attention.zero_grad()
        inp = x.clone().requires_grad_(True)
        attention(inp).square().sum().backward()
        grads.append((inp.grad, attention.rel_pos_h.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-4, rtol=1e-4)
