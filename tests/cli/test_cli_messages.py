"""The command line's messages in its own words: option names rather than Python arguments, one line rather than
a traceback or a library's warning, and a fallback where the demo can still run.

Everything runs in-process through `main`; nothing touches the internet (an "offline" host is a local port
where nothing listens).
"""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli as run
from conftest import star_dataset
from sam_from_scratch import download


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty cache of our own and a mirror where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once the probe closes
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(download.MIRROR_ENV, f"http://127.0.0.1:{port}/")
    return tmp_path


@pytest.fixture
def photo(tmp_path):
    """A 60 x 40 RGB PNG."""
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    return str(path)


def test_a_point_that_fits_as_y_x_asks_whether_it_was_swapped(photo, tmp_path, capsys, no_model):
    code, _, err = run(capsys, "segment", photo, "--point", "30,50", "--out", str(tmp_path / "m.png"))
    assert code == 2 and "--point 30,50 lies outside the 60x40 image; is it Y,X? --point takes X,Y" in err
    code, _, err = run(capsys, "segment", photo, "--point", "90,10", "--out", str(tmp_path / "m.png"))
    assert code == 2 and "lies outside the 60x40 image" in err and "Y,X" not in err  # no reading of it fits


@pytest.mark.parametrize("out", ["masks", "new_folder/"])
def test_an_out_that_names_a_folder_asks_for_a_file_name(photo, tmp_path, capsys, no_model, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "masks").mkdir()
    code, _, err = run(capsys, "segment", photo, "--point", "5,5", "--out", out)
    assert code == 2 and f"--out: {out} is a folder; give the mask's file name" in err
    assert "lossless" not in err and not (tmp_path / "new_folder").exists()


def test_a_bad_precision_in_the_environment_is_one_line(photo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAM_FROM_SCRATCH_DTYPE", "bogus")
    code, _, err = run(capsys, "segment", photo, "--point", "5,5", "--model", "tiny", "--device", "cpu",
                       "--out", str(tmp_path / "m.png"))
    assert code == 2 and "Traceback" not in err
    assert "error: SAM_FROM_SCRATCH_DTYPE: expected one of" in err and "got 'bogus'" in err
    assert not (tmp_path / "m.png").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_is_named_by_its_option(photo, tmp_path, capsys):
    code, _, err = run(capsys, "segment", photo, "--point", "5,5", "--model", "tiny", "--device", "cuda",
                       "--out", str(tmp_path / "m.png"))
    assert code == 2 and "error: --device: 'cuda' was asked for" in err and "--model/--device" not in err  # bad --device
    data = star_dataset(tmp_path / "stars", 2)
    code, _, err = run(capsys, "finetune", "--model", "tiny", "--data", str(data), "--out", str(tmp_path / "run"),
                       "--steps", "1", "--device", "cuda")
    assert code == 2 and err.startswith("error: --device: 'cuda' was asked for") and not (tmp_path / "run").exists()


def test_the_demo_falls_back_when_the_cached_checkpoint_does_not_load(offline, capsys):
    cache = offline / "cache"
    cache.mkdir()
    damaged = cache / download.CHECKPOINTS["vit_b"].filename
    damaged.write_text("not a checkpoint")
    code, out, err = run(capsys, "demo", "--out", str(offline / "outputs"))
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("could not load Meta's vit_b")]
    assert "is a text file" in line and line.endswith("using the bundled small model instead")
    assert "--model" not in err  # the demo has no such option
    assert "small course model (tiny)" in out and (offline / "outputs" / "demo_mask.png").exists()
    assert damaged.read_text() == "not a checkpoint"  # the user's file is left as it was


def test_everything_says_in_options_what_the_small_model_needs(photo, tmp_path, capsys):
    code, out, err = run(capsys, "everything", photo, "--model", "tiny", "--device", "cpu", "--points-per-side", "4",
                         "--pred-iou-thresh", "0.88", "--out", str(tmp_path / "result"))  # Meta's filters
    assert code == 0, err
    assert "UserWarning" not in err and "cli.py" not in err  # the generator's warning is not printed raw
    (line,) = [line for line in err.splitlines() if line.startswith("no masks:")]
    assert line.endswith("pred_iou_thresh 0.88 removed 48; the small model rates its masks low: leave out "
                         "--pred-iou-thresh for the filters measured for it")


def label_map_dataset(folder):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 48, 3), 40 * i, np.uint8)).save(folder / "images" / f"im{i}.png")
        labels = np.zeros((32, 48), np.uint8)
        labels[5:20, 5:20], labels[22:30, 30:45] = 1, 2
        Image.fromarray(labels).save(folder / "masks" / f"im{i}.png")
    return folder


def test_finetune_without_a_network_says_how_to_get_the_checkpoint(offline, capsys):
    data = label_map_dataset(offline / "data")
    code, _, err = run(capsys, "finetune", "--data", str(data), "--out", str(offline / "run"))  # vit_b by default
    assert code == 1 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith("error: --model vit_b: could not download vit_b")
    assert "Check that the mirror (set by $SAM_FROM_SCRATCH_MIRROR) serves the file" in line  # the offline mirror
    assert line.endswith("Or give its file as --checkpoint FILE.")
    assert not (offline / "cache").exists() or not list((offline / "cache").glob("*.pth"))


def test_finetune_takes_the_cache_and_the_mirror_of_the_other_commands(offline, capsys):
    data = label_map_dataset(offline / "data")
    cache, mirror = offline / "own_cache", "http://127.0.0.1:9/"  # port 9 (discard): nothing answers there
    code, _, err = run(capsys, "finetune", "--data", str(data), "--out", str(offline / "run"), "--cache-dir",
                       str(cache), "--mirror", mirror)
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"could not download vit_b from {mirror}" in line and f"Nothing was saved to {cache}" in line
    code, _, err = run(capsys, "finetune", "--data", str(data), "--out", str(offline / "run2"), "--mirror", "nohost")
    assert code == 2 and "error: --mirror: expected an http:// or https:// URL" in err


@pytest.mark.parametrize("args, message", [
    (["--val-fraction", "1.0"], "error: --val-fraction: expected a number in (0, 1)"),
    (["--val-ids", "nothere"], "error: --val-ids: expected ids or file names"),
    (["--val-ids", ""], "argument --val-ids: expected ids or file names separated by commas, got ''"),  # an unset variable
    (["--val-ids", "im0,,im1"], "argument --val-ids: expected ids or file names separated by commas, got 'im0,,im1'"),
])
def test_finetune_names_its_options(tmp_path, capsys, args, message):
    data = label_map_dataset(tmp_path / "data")
    code, _, err = run(capsys, "finetune", "--model", "tiny", "--data", str(data), "--out", str(tmp_path / "run"),
                       *args)
    assert code == 2 and message in err


def test_without_a_model_a_damaged_cached_vit_b_gives_the_small_model_not_a_download(offline, photo, capsys):
    """Without --model the command takes the best model here without a download: the cached file as it is,
    or, when it does not load, the small model (before: the hash check failed and a download began)."""
    import warnings

    from sam_from_scratch.interactive import ClickSegmenter

    cache = offline / "cache"
    cache.mkdir()
    damaged = cache / download.CHECKPOINTS["vit_b"].filename
    damaged.write_text("not a checkpoint")
    code, _, err = run(capsys, "segment", photo, "--point", "5,5", "--device", "cpu", "--out", str(offline / "m.png"))
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("could not load Meta's vit_b")]
    assert "is a text file" in line and line.endswith("using the bundled small model instead")
    assert "could not download" not in err and "downloading" not in err and damaged.read_text() == "not a checkpoint"
    with warnings.catch_warnings(record=True) as caught:  # the widgets choose the same way, and say so
        warnings.simplefilter("always")
        widget = ClickSegmenter(np.zeros((40, 60, 3), np.uint8))
    assert widget.predictor.model.image_encoder.img_size == 96  # the small model
    assert any("could not load Meta's vit_b" in str(w.message) and w.filename == __file__ for w in caught)
    widget.close()


def test_finetune_names_a_missing_checkpoint_by_its_option(tmp_path, capsys):
    data = label_map_dataset(tmp_path / "data")
    code, _, err = run(capsys, "finetune", "--model", "tiny", "--checkpoint", str(tmp_path / "nothere.pth"), "--data",
                       str(data), "--out", str(tmp_path / "run"), "--device", "cpu")
    assert code == 1 and err.startswith(f"error: --checkpoint: no file or folder at {tmp_path / 'nothere.pth'}.")


def test_val_ids_may_have_spaces_after_the_commas(tmp_path, capsys):
    data = label_map_dataset(tmp_path / "data")
    code, _, err = run(capsys, "finetune", "--model", "tiny", "--data", str(data), "--out", str(tmp_path / "run"),
                       "--device", "cpu", "--steps", "1", "--batch", "2", "--val-ids", "im0, im1")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"]["val_ids"] == ["im0", "im1"]


def test_export_onnx_makes_the_folder_of_out(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    out = tmp_path / "new" / "folder" / "decoder.onnx"
    code, _, err = run(capsys, "export-onnx", "--model", "tiny", "--out", str(out))
    assert code == 0, err
    assert out.stat().st_size > 0
