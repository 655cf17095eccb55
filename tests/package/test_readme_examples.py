"""The README's Python examples run as written, offline, and say what they do.

Each ```python block of README.md that needs no download runs here in order, in one namespace (the second uses the
first's `model` and `image`), in an empty folder; a block that names Meta's weights ("vit_b" downloads) is left
out, and the count of blocks is checked, so that a new example cannot slip past unrun.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from sam_from_scratch.errors import SamInputError
from sam_from_scratch.onnx_export import OLDEST_TORCH, torch_version

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def needs_a_download(block: str) -> bool:
    return "download_checkpoint(" in block


def test_the_offline_examples_run_as_written_and_do_what_the_readme_says(tmp_path, monkeypatch):
    for extra in ("onnx", "onnxscript", "ipywidgets"):  # the onnx and course extras, which the examples name
        pytest.importorskip(extra)
    if torch_version() < OLDEST_TORCH:
        pytest.skip("the ONNX example needs torch 2.8 or newer (the onnx extra)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAM_FROM_SCRATCH_CACHE", str(tmp_path / "empty-cache"))  # no real weights: the small model
    blocks = python_blocks()
    offline = [block for block in blocks if not needs_a_download(block)]
    assert len(blocks) == 5 and len(offline) == 4, "a README example was added or removed: run it here too"
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for block in offline:
            exec(compile(block, str(README), "exec"), namespace)
    masks, scores, logits = namespace["masks"], namespace["scores"], namespace["logits"]
    assert masks.shape == (3, 400, 600) and masks.dtype == bool and scores.shape == (3,)
    assert logits.shape[0] == 3
    # "the official filters drop all or nearly all of them (when none is left, the generator warns ...)";
    # with the card's filters, masks come back
    assert any("no mask passed the quality filters" in str(w.message) for w in caught)
    assert len(namespace["records"]) > 0
    assert (tmp_path / "decoder.onnx").stat().st_size > 100_000  # the export example writes its file


def test_the_wrong_input_the_readme_quotes_gives_the_message_it_quotes():
    text = " ".join(README.read_text().split())  # the quote is wrapped over lines
    call = re.search(r"`(predictor\.predict\(point_coords=np\.array\(\[\[190, 500\]\]\).*?\))` on that photo", text)
    quoted = re.search(r"`SamInputError` \(a `ValueError`, from `sam_from_scratch\.errors`\) with `(.*?)`\.", text)
    assert call and quoted
    from sam_from_scratch import SamPredictor, from_pretrained
    from sam_from_scratch.samples import load_sample_image

    predictor = SamPredictor(from_pretrained("tiny", device="cpu"))
    predictor.set_image(load_sample_image("coffee"))
    with pytest.raises(SamInputError) as caught:
        eval(call.group(1), {"predictor": predictor, "np": np})
    assert str(caught.value) == quoted.group(1)
