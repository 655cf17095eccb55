"""`python -m sam_from_scratch segment|everything`: outputs, refusals and messages.

The successful runs go through a real subprocess, as a user runs them; the argument errors call the same
entry point in-process (quicker). The model is a random tiny-config checkpoint, loaded by path.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam_from_scratch import SamAutomaticMaskGenerator, SamPredictor, from_pretrained
from sam_from_scratch.cli import main
from sam_from_scratch.utils.amg import rle_to_mask

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(official_tiny_random, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_weights") / "tiny_random.pth"
    torch.save(official_tiny_random.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def model(checkpoint):
    """The model the command line loads, loaded here the same way."""
    return from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def sample(scene_images, tmp_path_factory):
    """A 150x200 PNG on disk and its pixels."""
    pixels = np.ascontiguousarray(scene_images["landscape"][:150, :200])
    path = tmp_path_factory.mktemp("cli_images") / "sample.png"
    Image.fromarray(pixels).save(path)
    return str(path), pixels


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sam_from_scratch", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def run_in_process(capsys, *args):
    try:
        code = main(list(args))
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    return code, capsys.readouterr().err


# ---- segment -----------------------------------------------------------------------------------------------------


def test_segment_writes_the_predictors_mask_and_an_overlay(sample, checkpoint, model, tmp_path):
    image_path, pixels = sample
    out = tmp_path / "mask.png"
    out.write_bytes(b"old")  # an earlier result: --force replaces it
    result = run_cli("segment", image_path, "--point", "60,70", "--negative", "150,20", "--model", checkpoint,
                     "--device", "cpu", "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "loading the model" in result.stderr

    mask = np.asarray(Image.open(out))
    overlay = np.asarray(Image.open(tmp_path / "mask_overlay.png"))
    assert mask.shape == pixels.shape[:2] and set(np.unique(mask)) <= {0, 255}
    assert overlay.shape == pixels.shape

    predictor = SamPredictor(model)
    predictor.set_image(pixels)
    expected, _, _ = predictor.predict(np.array([[60.0, 70.0], [150.0, 20.0]]), np.array([1, 0]), multimask_output=False)
    assert ((mask == 255) == expected[0]).mean() >= 0.999  # (thread counts may differ: allow float rounding)


def test_segment_refuses_to_overwrite_without_force(sample, checkpoint, tmp_path, capsys):
    out = tmp_path / "mask.png"
    out.write_bytes(b"keep me")
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "5,5", "--model", checkpoint, "--out", str(out))
    assert code == 1 and "already exist" in err and "--force" in err
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--point", "abc"], "--point: expected X,Y (2 numbers separated by commas), got 'abc'"),
        (["--point", "1,2,3"], "--point: expected X,Y"),
        (["--box", "1,2,3"], "--box: expected X1,Y1,X2,Y2 (4 numbers separated by commas)"),
        (["--point", "nan,3"], "--point: expected X,Y"),
        ([], "give at least one prompt"),
        (["--point", "500,10"], "--point 500,10 lies outside the 200x150 image"),
        (["--negative", "10,-1"], "--negative 10,-1 lies outside"),
        (["--box", "100,10,20,40"], "--box 100,10,20,40: expected X1 <= X2 and Y1 <= Y2"),
    ],
)
def test_segment_explains_bad_prompts(sample, checkpoint, tmp_path, capsys, args, message):
    code, err = run_in_process(capsys, "segment", sample[0], *args, "--model", checkpoint, "--out", str(tmp_path / "m.png"))
    assert code == 2 and message in err
    assert not (tmp_path / "m.png").exists()


def test_segment_explains_unreadable_images(tmp_path, checkpoint, capsys):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    code, err = run_in_process(capsys, "segment", str(not_an_image), "--point", "1,1", "--model", checkpoint,
                               "--out", str(tmp_path / "m.png"))
    assert code == 1 and f"IMAGE: cannot read {not_an_image} as an image" in err
    code, err = run_in_process(capsys, "segment", str(tmp_path / "missing.jpg"), "--point", "1,1", "--out",
                               str(tmp_path / "m.png"))
    assert code == 1 and "missing.jpg does not exist" in err


def test_segment_explains_an_unknown_model(sample, tmp_path, capsys):
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "1,1", "--model", "vit_x",
                               "--out", str(tmp_path / "m.png"))
    assert code == 1 and "vit_x" in err and "'tiny', 'vit_b'" in err


def test_segment_wants_an_image_file_name(sample, tmp_path, capsys):
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "1,1", "--out", str(tmp_path / "mask.txt"))
    assert code == 2 and "needs an image extension such as .png" in err


# ---- everything ---------------------------------------------------------------------------------------------------


# random weights: no filters, or nothing would be left
EVERYTHING_OPTIONS = ["--points-per-side", "8", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


def test_everything_writes_the_generators_records_and_an_overlay(sample, checkpoint, model, tmp_path):
    image_path, pixels = sample
    out = tmp_path / "result"
    result = run_cli("everything", image_path, "--model", checkpoint, "--device", "cpu", "--out", str(out),
                     *EVERYTHING_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert "point batches" in result.stderr  # the progress bar

    records = json.loads((out / "masks.json").read_text(), parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    expected = SamAutomaticMaskGenerator(model, points_per_side=8, pred_iou_thresh=0,
                                         stability_score_thresh=0, output_mode="uncompressed_rle").generate(pixels)
    assert len(records) == len(expected) >= 1
    for record, wanted in zip(records, expected):
        mask = rle_to_mask(record["segmentation"])
        assert mask.shape == pixels.shape[:2]
        assert (mask == rle_to_mask(wanted["segmentation"])).mean() >= 0.999
    assert np.asarray(Image.open(out / "overlay.png")).shape == pixels.shape


def test_everything_refuses_to_overwrite_without_force(sample, checkpoint, tmp_path, capsys):
    (tmp_path / "masks.json").write_text("[]")
    code, err = run_in_process(capsys, "everything", sample[0], "--model", checkpoint, "--out", str(tmp_path))
    assert code == 1 and "masks.json already exist" in err and "--force" in err
    assert (tmp_path / "masks.json").read_text() == "[]"


def test_everything_explains_bad_settings(sample, checkpoint, tmp_path, capsys):
    code, err = run_in_process(capsys, "everything", sample[0], "--model", checkpoint, "--device", "cpu",
                               "--out", str(tmp_path / "r"), "--points-per-side", "0")
    assert code == 2 and "points_per_side" in err
