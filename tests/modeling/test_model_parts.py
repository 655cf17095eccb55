"""Unit behaviour of the model's parts, each against the official function or an independent fact."""

from __future__ import annotations

import pytest
import torch

from sam_from_scratch.modeling.image_encoder import get_rel_pos, window_partition, window_unpartition
from sam_from_scratch.modeling.positional_encoding import PositionEmbeddingRandom


@pytest.mark.parametrize("hw", [(14, 14), (16, 20), (64, 64), (5, 3)])
def test_window_partition_then_unpartition_is_identity(hw):
    x = torch.randn(2, *hw, 8)
    windows, padded = window_partition(x, 7)
    assert windows.shape[1:] == (7, 7, 8)
    assert padded[0] % 7 == 0 and padded[1] % 7 == 0
    assert torch.equal(window_unpartition(windows, 7, padded, hw), x)


@pytest.mark.parametrize("q_size,k_size,length", [(14, 14, 27), (64, 64, 127), (14, 14, 127), (32, 16, 63)])
def test_get_rel_pos_matches_official_including_interpolation(q_size, k_size, length):
    from segment_anything.modeling.image_encoder import get_rel_pos as official_get_rel_pos

    rel_pos = torch.randn(length, 16)
    torch.testing.assert_close(get_rel_pos(q_size, k_size, rel_pos), official_get_rel_pos(q_size, k_size, rel_pos))


def test_dense_grid_codes_are_the_codes_of_cell_centres():
    """forward(size) must equal forward_with_coords at the pixel centres of an h x w image."""
    pe = PositionEmbeddingRandom(8)
    h, w = 3, 5
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    coords = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2)
    expected = pe.forward_with_coords(coords, (h, w)).reshape(h, w, 16).permute(2, 0, 1)
    torch.testing.assert_close(pe((h, w)), expected)


def test_positional_codes_are_sin_cos_pairs_of_unit_length():
    pe = PositionEmbeddingRandom(32)
    codes = pe((4, 4))  # (64, 4, 4)
    sin, cos = codes[:32], codes[32:]
    torch.testing.assert_close(sin**2 + cos**2, torch.ones_like(sin))


def test_models_hold_no_float64_tensors():
    """Apple's MPS has no float64: nothing in the model may be created as double."""
    from sam_from_scratch import sam_model_registry

    model = sam_model_registry["tiny"]()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert tensor.dtype != torch.float64, name
