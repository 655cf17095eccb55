"""The course's diagrams draw for every configuration, and the shapes they label are the shapes the code makes.

Each diagram labels tensor shapes computed from a SamConfig; here the small model's modules (random weights,
built once) run on one image and one click, and every shape they produce must appear among the labels.
"""

from __future__ import annotations

from dataclasses import replace

import matplotlib
import pytest
import torch

from sam_from_scratch import diagrams
from sam_from_scratch.build import build_sam
from sam_from_scratch.config import CONFIGS
from sam_from_scratch.errors import SamInputError
from sam_from_scratch.modeling.image_encoder import window_partition
from sam_from_scratch.utils.amg import build_point_grid

matplotlib.use("Agg")

DIAGRAMS = [diagrams.model_overview, diagrams.encoder_blocks, diagrams.two_way_block, diagrams.hypernetwork]


@pytest.fixture(scope="module")
def tiny():
    """The small model's modules with random weights, and the tensors of one image and one click."""
    torch.manual_seed(0)
    sam = build_sam(CONFIGS["tiny"], fast=False)
    S = sam.image_encoder.img_size
    with torch.no_grad():
        image = sam.preprocess(torch.rand(3, S, S * 2 // 3) * 255)[None]  # (1, 3, S, S)
        embedding = sam.image_encoder(image)
        points = (torch.tensor([[[S / 2, S / 3]]]), torch.ones(1, 1))
        sparse, dense = sam.prompt_encoder(points=points, boxes=None, masks=None)
        pe = sam.prompt_encoder.get_dense_pe()
        low_res, iou = sam.mask_decoder(embedding, pe, sparse, dense, multimask_output=True)
    return sam, dict(image=image, embedding=embedding, sparse=sparse, dense=dense, pe=pe, low_res=low_res, iou=iou)


def labels(figure) -> str:
    return "\n".join(diagrams.texts(figure))


def label(t: torch.Tensor) -> str:
    return diagrams.shape(*t.shape)


@pytest.mark.parametrize("draw", DIAGRAMS, ids=lambda f: f.__name__)
def test_each_diagram_draws_for_vit_b_and_tiny_with_their_own_numbers(draw):
    figures = {name: draw(CONFIGS[name]) for name in ("vit_b", "tiny")}
    for figure in figures.values():
        assert isinstance(figure, matplotlib.figure.Figure)
        figure.canvas.draw()  # lays out every text: fails on a label matplotlib cannot render
    assert labels(figures["vit_b"]) != labels(figures["tiny"])


def test_the_generator_pipeline_draws_and_counts_its_points():
    text = labels(diagrams.mask_generator_pipeline(points_per_side=16, points_per_batch=64))
    assert f"{len(build_point_grid(16))} points" in text
    assert "4 batches of 64 points" in text


def test_the_model_overview_labels_the_shapes_of_a_forward_pass(tiny):
    _, t = tiny
    text = labels(diagrams.model_overview(CONFIGS["tiny"]))
    for name in ("image", "embedding", "sparse", "dense", "pe", "low_res", "iou"):
        assert label(t[name]) in text, name


def test_the_encoder_diagram_labels_the_windows_and_tables_of_the_real_blocks(tiny):
    sam, _ = tiny
    text = labels(diagrams.encoder_blocks(CONFIGS["tiny"]))
    encoder = sam.image_encoder
    g = CONFIGS["tiny"].image_embedding_size
    x = torch.zeros(1, g, g, encoder.patch_embed.proj.out_channels)
    windowed = next(b for b in encoder.blocks if b.window_size > 0)
    global_block = next(b for b in encoder.blocks if b.window_size == 0)
    assert label(x) in text
    assert label(window_partition(x, windowed.window_size)[0]) in text
    assert label(windowed.attn.rel_pos_h) in text and label(global_block.attn.rel_pos_h) in text
    mlp = windowed.mlp
    assert f"{mlp.lin1.in_features} -> {mlp.lin1.out_features} -> {mlp.lin2.out_features}" in text


def test_the_two_way_diagram_labels_what_a_real_block_takes_and_returns(tiny):
    sam, t = tiny
    transformer = sam.mask_decoder.transformer
    tokens = torch.cat([sam.mask_decoder.iou_token.weight, sam.mask_decoder.mask_tokens.weight])[None]
    tokens = torch.cat([tokens, t["sparse"]], dim=1)  # (1, 5 + N, C)
    image = (t["embedding"] + t["dense"]).flatten(2).transpose(1, 2)  # (1, h*w, C)
    pe = t["pe"].flatten(2).transpose(1, 2)
    with torch.no_grad():
        queries, keys = transformer.layers[1](tokens, image, tokens, pe)
    text = labels(diagrams.two_way_block(CONFIGS["tiny"], num_prompt_tokens=t["sparse"].shape[1]))
    assert label(queries) in text and label(keys) in text
    assert f"inner width {transformer.layers[1].cross_attn_token_to_image.internal_dim}" in text
    assert f"inner width {transformer.layers[1].cross_attn_image_to_token.internal_dim}" in text


def test_the_hypernetwork_diagram_labels_the_real_upscaling_and_dot_product(tiny):
    sam, t = tiny
    decoder = sam.mask_decoder
    seen = {}
    hooks = [decoder.output_upscaling.register_forward_hook(lambda m, i, o: seen.setdefault("upscaled", o)),
             decoder.output_hypernetworks_mlps[0].register_forward_hook(lambda m, i, o: seen.setdefault("mlp", o))]
    with torch.no_grad():
        masks, _ = decoder.predict_masks(t["embedding"], t["pe"], t["sparse"], t["dense"])
    for hook in hooks:
        hook.remove()
    text = labels(diagrams.hypernetwork(CONFIGS["tiny"]))
    hyper_in = torch.stack([seen["mlp"]] * decoder.num_mask_tokens, dim=1)  # (1, 4, C/8)
    assert label(seen["upscaled"]) in text
    assert label(hyper_in) in text
    assert label(masks) in text


def test_a_grid_smaller_than_a_batch_is_drawn_as_one_batch_of_its_points():
    text = labels(diagrams.mask_generator_pipeline(points_per_side=4, points_per_batch=64))
    assert "4 x 4 = 16 points" in text
    assert "1 batch of 16 points" in text and "logits (48, H, W)" in text  # not "1 batches of 64", (192, H, W)


@pytest.mark.parametrize("arguments, message", [
    (dict(points_per_side=-3), r"^points_per_side: expected a positive integer, got int -3\."),  # "-3 x -3 = 9"
    (dict(points_per_side=0), r"^points_per_side: expected a positive integer, got int 0\."),
    (dict(points_per_batch=0), r"^points_per_batch: expected a positive integer, got int 0\."),  # ZeroDivisionError
    (dict(points_per_side=4.0), r"^points_per_side: expected a positive integer, got float 4\.0\."),
])
def test_the_generator_pipeline_refuses_counts_below_one(arguments, message):
    with pytest.raises(SamInputError, match=message):
        diagrams.mask_generator_pipeline(**arguments)


def test_window_size_zero_is_drawn_as_global_attention_in_every_block(tiny):
    config = replace(CONFIGS["tiny"], window_size=0)  # builds and runs: every block global
    assert all(block.window_size == 0 for block in build_sam(config, fast=False).image_encoder.blocks)
    text = labels(diagrams.encoder_blocks(config))  # the config builds and runs: global attention in every block
    assert "global block (blocks 0, 1, 2, 3)" in text and "windowed block (" not in text
    assert "window_size is 0, so every block attends over the whole grid" in text
    g = config.image_embedding_size
    sam, _ = tiny
    assert label(sam.image_encoder.blocks[config.encoder_global_attn_indexes[0]].attn.rel_pos_h) in text
    assert f"{g * g} keys per query" in text


@pytest.mark.parametrize("draw", DIAGRAMS, ids=lambda f: f.__name__)
def test_a_diagram_of_a_name_or_a_model_points_to_its_config(tiny, draw):
    sam, _ = tiny
    with pytest.raises(SamInputError, match=r"^config: expected a SamConfig, .*got str 'tiny'\. Pass CONFIGS\['tiny'\]"):
        draw("tiny")
    with pytest.raises(SamInputError, match=r"^config: expected a SamConfig, .*got a Sam model; pass its config, "
                                            r"CONFIGS\['tiny'\]\.$"):
        draw(sam)


def test_the_two_way_diagram_refuses_a_negative_number_of_prompt_tokens():
    with pytest.raises(SamInputError, match=r"^num_prompt_tokens: expected an integer >= 0, got int -5\."):
        diagrams.two_way_block(CONFIGS["tiny"], num_prompt_tokens=-5)
