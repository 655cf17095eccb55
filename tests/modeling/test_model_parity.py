"""Our plain model against the official implementation, on the same random weights loaded from an official-format
file. (The fast paths are compared with the plain model in test_fast_paths.py.)

Measured on CPU fp32 (2 cores), vit_b: image embeddings max |diff| ~6e-6; prompt embeddings 0 (bit-identical);
mask logits and IoU predictions on the same embedding 0 (bit-identical), end-to-end logits ~1e-5.
The tolerance asked for is 1e-4.
"""

from __future__ import annotations


import pytest
import torch

TOL = 1e-4


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def image():
    """A 683 x 1024 (already resized) image: non-square, so the padding matters."""
    generator = torch.Generator().manual_seed(7)
    return torch.rand(3, 683, 1024, generator=generator) * 255


@pytest.fixture(scope="module")
def embeddings(vit_b_predictors, plain_vit_b):
    """The official embedding of a non-square picture (shared with the predictor tests) and ours, plain."""
    picture, _, official = vit_b_predictors("landscape")
    resized = torch.as_tensor(official.transform.apply_image(picture)).permute(2, 0, 1)  # (3, h, w), long side 1024
    with torch.no_grad():
        mine = plain_vit_b.image_encoder(plain_vit_b.preprocess(resized)[None])
    return official.features, mine


PROMPTS = {
    "points only": dict(points=([[[100.0, 200.0], [500.0, 600.0], [900.0, 30.0]]], [[1, 0, 1]]), boxes=None, masks=None),
    "box only": dict(points=None, boxes=[[50.0, 60.0, 700.0, 650.0]], masks=None),
    "points and box": dict(points=([[[300.0, 300.0]]], [[0]]), boxes=[[50.0, 60.0, 700.0, 650.0]], masks=None),
    "mask input": dict(points=([[[400.0, 250.0]]], [[1]]), boxes=None, masks="random"),
    "points in float64": dict(points=([[[120.0, 80.0], [640.5, 333.25]]], [[1, 0]]), boxes=None, masks=None,
                              dtype=torch.float64),  # as the mask generator passes its grid
    "batch of boxes": dict(points=None, boxes=[[0.0, 0.0, 100.0, 100.0], [10.0, 500.0, 900.0, 680.0], [300, 40, 310, 600]], masks=None),
}


def make_prompt(spec):
    points = None
    if spec["points"] is not None:
        coords, labels = spec["points"]
        points = (torch.tensor(coords, dtype=spec.get("dtype", torch.float)), torch.tensor(labels, dtype=torch.int))
    boxes = None if spec["boxes"] is None else torch.tensor(spec["boxes"], dtype=torch.float)
    masks = None
    if spec["masks"] == "random":
        masks = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(3)) * 5
    return dict(points=points, boxes=boxes, masks=masks)


def test_state_dict_keys_and_shapes_equal_official_vit_b(official_vit_b, plain_vit_b):
    theirs = {k: tuple(v.shape) for k, v in official_vit_b.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in plain_vit_b.state_dict().items()}
    assert mine == theirs


@pytest.mark.parametrize("variant", ["vit_l", "vit_h"])
def test_state_dict_keys_and_shapes_equal_official(variant):
    from segment_anything import sam_model_registry as official_registry

    from sam_from_scratch import sam_model_registry

    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in official_registry[variant]().state_dict().items()}
        mine = {k: tuple(v.shape) for k, v in sam_model_registry[variant]().state_dict().items()}
    assert mine == theirs


def test_default_is_vit_h():
    from sam_from_scratch import sam_model_registry

    with torch.device("meta"):
        model = sam_model_registry["default"]()
    assert model.image_encoder.patch_embed.proj.out_channels == 1280
    assert len(model.image_encoder.blocks) == 32


def test_image_embeddings_match_official(embeddings):
    theirs, mine = embeddings
    assert mine.shape == (1, 256, 64, 64)
    assert max_diff(theirs, mine) <= TOL


def test_preprocess_matches_official(official_vit_b, plain_vit_b, image):
    assert max_diff(official_vit_b.preprocess(image), plain_vit_b.preprocess(image)) == 0.0


def test_dense_positional_encoding_matches_official(official_vit_b, plain_vit_b):
    theirs = official_vit_b.prompt_encoder.get_dense_pe()
    mine = plain_vit_b.prompt_encoder.get_dense_pe()
    assert mine.shape == (1, 256, 64, 64)
    assert max_diff(theirs, mine) <= TOL


@pytest.mark.parametrize("case", list(PROMPTS))
def test_prompt_embeddings_match_official(official_vit_b, plain_vit_b, case):
    prompt = make_prompt(PROMPTS[case])
    with torch.no_grad():
        sparse_ref, dense_ref = official_vit_b.prompt_encoder(**prompt)
        sparse, dense = plain_vit_b.prompt_encoder(**prompt)
    assert max_diff(sparse_ref, sparse) <= TOL
    assert max_diff(dense_ref, dense) <= TOL


@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("case", list(PROMPTS))
def test_mask_logits_and_iou_match_official(official_vit_b, plain_vit_b, embeddings, case, multimask_output):
    """Each model decodes from its *own* image embedding: the whole chain is compared."""
    theirs_embedding, my_embedding = embeddings
    prompt = make_prompt(PROMPTS[case])
    with torch.no_grad():
        sparse_ref, dense_ref = official_vit_b.prompt_encoder(**prompt)
        logits_ref, iou_ref = official_vit_b.mask_decoder(
            theirs_embedding, official_vit_b.prompt_encoder.get_dense_pe(), sparse_ref, dense_ref, multimask_output
        )
        sparse, dense = plain_vit_b.prompt_encoder(**prompt)
        logits, iou = plain_vit_b.mask_decoder(my_embedding, plain_vit_b.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)
    n_masks = 3 if multimask_output else 1
    batch = sparse.shape[0]
    assert logits.shape == (batch, n_masks, 256, 256)
    assert iou.shape == (batch, n_masks)
    assert max_diff(logits_ref, logits) <= TOL
    assert max_diff(iou_ref, iou) <= TOL


def test_small_config_end_to_end_forward_matches_official():
    """Batched `forward` on two images with different prompts, in a small config (window padding: 8 % 3 != 0)."""
    from conftest import official_sam_for_config, perturb_

    from sam_from_scratch import SamConfig, build_sam

    config = SamConfig(
        encoder_embed_dim=64, encoder_depth=4, encoder_num_heads=2, encoder_global_attn_indexes=(1, 3),
        image_size=128, window_size=3, prompt_embed_dim=32, mask_in_chans=8, decoder_num_heads=2,
        decoder_mlp_dim=64, iou_head_hidden_dim=32,
    )
    reference = perturb_(official_sam_for_config(config), seed=5, std=0.05)
    model = build_sam(config, fast=False)
    model.load_state_dict(reference.state_dict())

    generator = torch.Generator().manual_seed(11)
    batched_input = [
        {
            "image": torch.rand(3, 128, 85, generator=generator) * 255,
            "original_size": (300, 200),
            "point_coords": torch.tensor([[[40.0, 60.0]], [[10.0, 100.0]]]),
            "point_labels": torch.tensor([[1], [1]]),
        },
        {
            "image": torch.rand(3, 96, 128, generator=generator) * 255,
            "original_size": (96, 128),
            "boxes": torch.tensor([[10.0, 10.0, 90.0, 70.0]]),
            "mask_inputs": torch.randn(1, 1, 32, 32, generator=generator),
        },
    ]
    for multimask_output in (True, False):
        expected = reference(batched_input, multimask_output)
        actual = model(batched_input, multimask_output)
        for exp, act in zip(expected, actual):
            assert set(act) == {"masks", "iou_predictions", "low_res_logits"}
            assert max_diff(exp["low_res_logits"], act["low_res_logits"]) <= TOL
            assert max_diff(exp["iou_predictions"], act["iou_predictions"]) <= TOL
            assert act["masks"].dtype == torch.bool
            assert act["masks"].shape == exp["masks"].shape
            assert (act["masks"] == exp["masks"]).float().mean().item() >= 0.999


def test_postprocess_masks_matches_official(official_vit_b, plain_vit_b):
    logits = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    theirs = official_vit_b.postprocess_masks(logits, (683, 1024), (400, 600))
    mine = plain_vit_b.postprocess_masks(logits, (683, 1024), (400, 600))
    assert mine.shape == (2, 3, 400, 600)
    assert max_diff(theirs, mine) <= TOL
