"""Hugging Face checkpoints: transformers' `SamModel` weights, written by `save_pretrained`, load into our model
through the key map in sam_from_scratch/checkpoint.py and give the same outputs as `SamModel` itself.

The HF model is vit_b with every weight perturbed. One deliberate config change: transformers builds the
two-way transformer's LayerNorms with eps 1e-6 where the official SAM (and we) use PyTorch's default 1e-5, so
the decoder config sets `layer_norm_eps=1e-5` to compare the weights and nothing else.

Measured on CPU fp32 (2 shared cores), see the printed lines with `pytest -s`: image embeddings max |diff| 1.2e-5;
sparse prompt embeddings 0, dense 6e-7 (mask input) else 0; on the same image embedding mask logits <= 7.2e-7
(|logits| up to ~1.3) and IoU predictions <= 1.2e-7. The tolerance is 1e-4.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import perturb_
from safetensors.torch import save_file
from transformers import SamConfig, SamModel, SamVisionConfig
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig

from sam_from_scratch import CONFIGS, sam_model_registry
from sam_from_scratch.checkpoint import guess_variant, hf_to_official, read_state_dict

TOL = 1e-4


def hf_config(name: str) -> SamConfig:
    """transformers' SamConfig for one of the official variants (numbers from sam_from_scratch.CONFIGS)."""
    ours = CONFIGS[name]
    vision = SamVisionConfig(
        hidden_size=ours.encoder_embed_dim,
        num_hidden_layers=ours.encoder_depth,
        num_attention_heads=ours.encoder_num_heads,
        global_attn_indexes=list(ours.encoder_global_attn_indexes),
    )
    return SamConfig(vision_config=vision, mask_decoder_config=SamMaskDecoderConfig(layer_norm_eps=1e-5))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a.float() - b.float()).abs().max().item()


# --- the key map, on every official size (meta device: no memory, no compute) ---------------------------
@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_hf_key_map_renames_every_key_to_ours_with_equal_shapes(name):
    with torch.device("meta"):
        hf_state = SamModel(hf_config(name)).state_dict()
        ours_state = sam_model_registry[name]().state_dict()
    renamed = hf_to_official(hf_state)
    assert sorted(renamed) == sorted(ours_state)
    assert {k: tuple(v.shape) for k, v in renamed.items()} == {k: tuple(v.shape) for k, v in ours_state.items()}
    assert guess_variant(renamed) == name


# --- one perturbed vit_b, saved with save_pretrained, loaded through our registry ------------------------
@pytest.fixture(scope="module")
def hf_vit_b():
    torch.manual_seed(0)
    model = SamModel(hf_config("vit_b"))
    # transformers initialises with std 0.02, which makes mask logits ~0.1; PyTorch's default init (what the
    # official random model gets) gives logits of a few units, so a wrong mapping shows up clearly.
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    # The tied matrix is shared by two modules: perturb it through one of them only.
    perturb_(model.vision_encoder, seed=11)
    perturb_(model.prompt_encoder, seed=12)
    perturb_(model.mask_decoder, seed=13)
    assert (model.shared_image_embedding.positional_embedding.data_ptr()  # one tensor (transformers 4 shares .data)
            == model.prompt_encoder.shared_embedding.positional_embedding.data_ptr())
    return model.eval()


@pytest.fixture(scope="module")
def hf_folder(hf_vit_b, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "sam-vit-base-random"
    hf_vit_b.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ours_from_hf(hf_folder):
    return sam_model_registry["vit_b"](checkpoint=hf_folder)


def test_save_pretrained_folder_loads_every_tensor_unchanged(hf_vit_b, ours_from_hf):
    hf_state = hf_to_official(hf_vit_b.state_dict())
    ours_state = ours_from_hf.state_dict()
    assert sorted(hf_state) == sorted(ours_state)
    for key, tensor in ours_state.items():
        assert torch.equal(tensor, hf_state[key]), key


def test_model_safetensors_file_reads_like_its_folder(hf_folder):
    from_folder = read_state_dict(hf_folder)
    from_file = read_state_dict(hf_folder / "model.safetensors")
    assert from_folder.keys() == from_file.keys()
    assert all(torch.equal(from_folder[k], from_file[k]) for k in from_folder)


def test_sharded_safetensors_folder_reads_like_one_file(hf_vit_b, tmp_path):
    # Two shards and an index, the layout save_pretrained writes for big models (written by hand: fast).
    state = {k: v.contiguous() for k, v in hf_vit_b.state_dict().items() if k != "prompt_encoder.shared_embedding.positional_embedding"}
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2], "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    for file_name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, str(tmp_path / file_name))
    weight_map = {k: file_name for file_name, shard_keys in shards.items() for k in shard_keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))

    loaded = read_state_dict(tmp_path)
    expected = hf_to_official(state)
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_pytorch_model_bin_folder_with_both_tied_copies_reads(hf_vit_b, tmp_path):
    # Older transformers wrote pytorch_model.bin holding both copies of the tied positional matrix.
    state = hf_vit_b.state_dict()
    assert "prompt_encoder.shared_embedding.positional_embedding" in state
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = read_state_dict(tmp_path)
    assert torch.equal(
        loaded["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"],
        hf_vit_b.shared_image_embedding.positional_embedding,
    )
    assert guess_variant(loaded) == "vit_b"


# --- same outputs ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pixels(ours_from_hf):
    """A normalized, padded 683 x 1024 image (1, 3, 1024, 1024); preprocessing is not part of the checkpoint."""
    image = torch.rand(3, 683, 1024, generator=torch.Generator().manual_seed(5)) * 255
    return ours_from_hf.preprocess(image)[None]


@pytest.fixture(scope="module")
def image_embeddings(hf_vit_b, ours_from_hf, pixels):
    with torch.no_grad():
        theirs = hf_vit_b.get_image_embeddings(pixels)
        mine = ours_from_hf.image_encoder(pixels)
    return theirs, mine


def test_image_embeddings_match_hf(image_embeddings):
    theirs, mine = image_embeddings
    diff = max_diff(theirs, mine)
    print(f"\nHF parity, image embeddings (1, 256, 64, 64): max |diff| = {diff:.2e}")
    assert diff <= TOL


# Prompts in our (official) form; `to_hf` turns them into SamModel's (image batch 1, point batch B).
PROMPTS = {
    "points only": dict(coords=[[[100.0, 200.0], [500.0, 600.0], [900.0, 30.0]]], labels=[[1, 0, 1]]),
    "box only": dict(boxes=[[50.0, 60.0, 700.0, 650.0]]),
    "points and box": dict(coords=[[[300.0, 300.0]]], labels=[[0]], boxes=[[50.0, 60.0, 700.0, 650.0]]),
    "mask input": dict(coords=[[[400.0, 250.0]]], labels=[[1]], mask=True),
    "batch of points": dict(coords=[[[10.0, 20.0], [30.0, 40.0]], [[700.0, 500.0], [1.0, 1000.0]]], labels=[[1, 1], [0, 1]]),
}


def ours_inputs(spec):
    points = None
    if "coords" in spec:
        points = (torch.tensor(spec["coords"]), torch.tensor(spec["labels"], dtype=torch.int))
    boxes = torch.tensor(spec["boxes"]) if "boxes" in spec else None
    masks = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(3)) * 5 if spec.get("mask") else None
    return points, boxes, masks


def to_hf(points, boxes, masks):
    """Ours: coords (B, N, 2), labels (B, N), boxes (B, 4), masks (B, 1, 256, 256); HF adds an image-batch axis."""
    return dict(
        input_points=None if points is None else points[0][None],  # (1, B, N, 2)
        input_labels=None if points is None else points[1][None],  # (1, B, N)
        input_boxes=None if boxes is None else boxes[None],  # (1, B, 4)
        input_masks=masks,  # (1, 1, 256, 256): HF's mask input only works with point batch 1
    )


@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_prompt_embeddings_match_hf(hf_vit_b, ours_from_hf, prompt):
    points, boxes, masks = ours_inputs(PROMPTS[prompt])
    with torch.no_grad():
        hf_sparse, hf_dense = hf_vit_b.get_prompt_embeddings(**to_hf(points, boxes, masks))
        sparse, dense = ours_from_hf.prompt_encoder(points=points, boxes=boxes, masks=masks)
    sparse_diff = max_diff(hf_sparse[0], sparse)  # (B, N, 256)
    dense_diff = max_diff(hf_dense.expand_as(dense), dense)  # (B, 256, 64, 64)
    print(f"\nHF parity, prompt embeddings ({prompt}): sparse {sparse_diff:.2e}, dense {dense_diff:.2e}")
    assert sparse_diff <= TOL and dense_diff <= TOL


@pytest.mark.parametrize("multimask_output", [True, False])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_mask_logits_and_iou_match_hf(hf_vit_b, ours_from_hf, image_embeddings, prompt, multimask_output):
    _, embedding = image_embeddings  # the same embedding for both: this test is about the decoder
    points, boxes, masks = ours_inputs(PROMPTS[prompt])
    with torch.no_grad():
        out = hf_vit_b(image_embeddings=embedding, multimask_output=multimask_output, **to_hf(points, boxes, masks))
        sparse, dense = ours_from_hf.prompt_encoder(points=points, boxes=boxes, masks=masks)
        logits, iou = ours_from_hf.mask_decoder(
            image_embeddings=embedding,
            image_pe=ours_from_hf.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
    logits_diff = max_diff(out.pred_masks[0], logits)  # (B, 3 or 1, 256, 256)
    iou_diff = max_diff(out.iou_scores[0], iou)  # (B, 3 or 1)
    print(
        f"\nHF parity, {prompt}, multimask={multimask_output}: logits {logits_diff:.2e} "
        f"(|logits| up to {logits.abs().max():.1f}), IoU {iou_diff:.2e}"
    )
    assert logits_diff <= TOL and iou_diff <= TOL
