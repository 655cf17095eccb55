"""A SamConfig is checked when it is made: a field SAM's modules cannot be built or run with is named then, not
at the first set_image deep inside attention, and never ignored (a global block beyond the depth) or turned into
NaN scores (a pixel_std of 0).

config.py imports nothing from the package (tests/package/test_layout.py), so these are plain ValueErrors with
the message of a SamInputError: "<field>: expected ..., got ...".
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sam_from_scratch.build import build_sam
from sam_from_scratch.config import CONFIGS, SamConfig

TINY = CONFIGS["tiny"]


@pytest.mark.parametrize("fields, message", [
    ({"encoder_num_heads": 3}, r"^encoder_num_heads: expected a divisor of encoder_embed_dim = 128 \(each head takes "
                               r"encoder_embed_dim / encoder_num_heads channels\), got int 3\. Divisors of 128 near "
                               r"it: 1, 2, 4\.$"),
    ({"encoder_embed_dim": 130}, r"^encoder_num_heads: expected a divisor of encoder_embed_dim = 130 .*got int 4\."),
    ({"image_size": 0}, r"^image_size: expected a positive integer, got int 0\.$"),
    ({"image_size": 96.0}, r"^image_size: expected a positive integer, got float 96\.0\.$"),
    ({"image_size": True}, r"^image_size: expected a positive integer, got bool True\.$"),
    ({"image_size": 100}, r"^patch_size: expected a divisor of image_size = 100 \(the image is cut into a whole "
                          r"number of patches per side\), got int 8\. Divisors of 100 near it: 4, 5, 10\.$"),
    ({"patch_size": 7}, r"^patch_size: expected a divisor of image_size = 96 .*got int 7\."),
    ({"patch_size": 200}, r"^patch_size: expected a divisor of image_size = 96 .*got int 200\."),
    ({"encoder_global_attn_indexes": (1, 9)}, r"^encoder_global_attn_indexes: expected block indexes from 0 to 3 "
                                              r"\(encoder_depth = 4\), got tuple \(1, 9\)\. Block 9 does not exist, "
                                              r"so it would be ignored\.$"),
    ({"encoder_global_attn_indexes": (-1,)}, r"^encoder_global_attn_indexes: expected block indexes from 0 to 3"),
    ({"encoder_global_attn_indexes": 3}, r"^encoder_global_attn_indexes: expected a tuple of block indexes "
                                         r"\(integers\), e\.g\. \(2, 5, 8, 11\), got int 3\.$"),
    ({"pixel_std": (0.0, 1.0, 1.0)}, r"^pixel_std: expected 3 finite numbers > 0, one per channel R, G, B \(on the "
                                     r"0\.\.255 scale\), got tuple \(0\.0, 1\.0, 1\.0\)\. Each channel is divided by "
                                     r"its std: a 0 gives NaN masks and scores\.$"),
    ({"pixel_std": (1.0, float("nan"), 1.0)}, r"^pixel_std: expected 3 finite numbers > 0"),
    ({"pixel_mean": (1.0, 2.0)}, r"^pixel_mean: expected 3 finite numbers, one per channel .*got tuple \(1\.0, 2\.0\)\.$"),
    ({"decoder_num_heads": 5}, r"^decoder_num_heads: expected a divisor of prompt_embed_dim / 2 = 32 \(the decoder's "
                               r"cross-attentions run at half of prompt_embed_dim, attention_downsample_rate 2\), got "
                               r"int 5\. Divisors of 32 near it: 2, 4, 8\.$"),
    # 64 divides by 64 for the self-attention, but the cross-attentions have 32 channels
    ({"decoder_num_heads": 64}, r"^decoder_num_heads: expected a divisor of prompt_embed_dim / 2 = 32 "),
    ({"prompt_embed_dim": 63}, r"^prompt_embed_dim: expected an even integer >= 8 .*got int 63\.$"),
    ({"window_size": -1}, r"^window_size: expected an integer >= 0 \(the side of the attention windows in tokens; "
                          r"0: global attention in every block\), got int -1\.$"),
    ({"window_size": 2.5}, r"^window_size: expected an integer >= 0 .*got float 2\.5\.$"),
    ({"encoder_depth": 0}, r"^encoder_depth: expected a positive integer, got int 0\.$"),
    ({"mlp_ratio": 0}, r"^mlp_ratio: expected a finite number > 0 "),
    ({"mask_in_chans": 3}, r"^mask_in_chans: expected an integer >= 4 .*got int 3\.$"),
    ({"encoder_embed_dim": "128"}, r"^encoder_embed_dim: expected a positive integer, got str '128'\.$"),
], ids=lambda value: str(value)[:40] if isinstance(value, dict) else "")
def test_a_field_sam_cannot_be_built_or_run_with_is_named_when_the_config_is_made(fields, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TINY, **fields)
    with pytest.raises(ValueError, match=message):
        SamConfig(**{**dataclasses.asdict(TINY), **fields})


# The configurations the package, the tests, the notebooks and the benchmarks build.
BUILT_ELSEWHERE = {
    "micro (training tests)": dict(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                                   encoder_global_attn_indexes=(1,), image_size=48, patch_size=8, window_size=3,
                                   prompt_embed_dim=32, decoder_num_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32),
    "model parity": dict(encoder_embed_dim=64, encoder_depth=4, encoder_num_heads=2, encoder_global_attn_indexes=(1, 3),
                         image_size=128, window_size=3, prompt_embed_dim=32, mask_in_chans=8, decoder_num_heads=2,
                         decoder_mlp_dim=64, iou_head_hidden_dim=32),
    "fast paths' small": {**dataclasses.asdict(TINY), "window_size": 5},
    "benchmark patch2": {**dataclasses.asdict(TINY), "patch_size": 2, "window_size": 12},
}


@pytest.mark.parametrize("name", [*CONFIGS, *BUILT_ELSEWHERE])
def test_every_config_in_use_passes(name):
    config = CONFIGS[name] if name in CONFIGS else SamConfig(**BUILT_ELSEWHERE[name])
    assert dataclasses.replace(config) == config


def test_what_the_official_modules_take_is_accepted_and_runs():
    """window_size 0 is the official ImageEncoderViT's default (global attention in every block); numpy integers,
    a list of global blocks and a list of pixel statistics are the same config as their plain tuple."""
    from sam_from_scratch import SamPredictor

    config = dataclasses.replace(TINY, window_size=0, encoder_global_attn_indexes=[np.int64(1), 3],
                                 pixel_mean=list(TINY.pixel_mean), image_size=np.int64(96))
    assert config.encoder_global_attn_indexes == (1, 3) and isinstance(config.pixel_mean, tuple)
    hash(config)  # frozen, and hashable like the named ones
    odd = dataclasses.replace(TINY, prompt_embed_dim=12, decoder_num_heads=2, mask_in_chans=5, window_size=20)
    for each in (config, odd):
        predictor = SamPredictor(build_sam(each))
        predictor.set_image(np.zeros((40, 60, 3), np.uint8))
        masks, scores, _ = predictor.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1]))
        assert masks.shape == (3, 40, 60) and np.isfinite(scores).all()
