"""The command line: `segment` and `everything` (outputs, refusals, messages), what every command shares
(help, version, program name, exit codes), `train-tiny`'s options and timing, and `export-onnx`.

The successful runs go through a real subprocess, as a user runs them; the argument errors call the same
entry point in-process (quicker). The model is a random tiny-config checkpoint, loaded by path.
"""

import json
import re
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

REPO = Path(__file__).resolve().parents[2]


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


# --out x.png writes the mask to x.png and the overlay to x_overlay.png: either may be the image itself
@pytest.mark.parametrize("image_name", ["photo.png", "photo_overlay.png"], ids=["the mask", "the overlay"])
def test_segment_never_writes_over_its_own_image_even_with_force(sample, checkpoint, tmp_path, capsys, image_name):
    image = tmp_path / image_name
    image.write_bytes(Path(sample[0]).read_bytes())
    before = image.read_bytes()
    code, err = run_in_process(capsys, "segment", str(image), "--point", "5,5", "--model", checkpoint,
                               "--out", str(tmp_path / "photo.png"), "--force")
    if image_name == "photo.png":
        assert code == 2 and f"--out: {image} is the image being segmented, IMAGE" in err, err
    else:  # the overlay's name is made from --out's: both are named
        assert code == 2 and (f"--out: the overlay (named after {tmp_path / 'photo.png'}) would be written to {image}, "
                              "which is the image being segmented, IMAGE") in err, err
    assert image.read_bytes() == before


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
        (["--box", "100,10,20,40"], "--box: expected x1 <= x2 and y1 <= y2 (corners [x1, y1, x2, y2]), got 100,10,20,40"),
    ],
)
def test_segment_explains_bad_prompts(sample, checkpoint, tmp_path, capsys, args, message):
    code, err = run_in_process(capsys, "segment", sample[0], *args, "--model", checkpoint, "--out", str(tmp_path / "m.png"))
    assert code == 2 and message in err
    assert not (tmp_path / "m.png").exists()


def test_a_leading_tilde_is_the_home_folder_in_every_path_option(sample, checkpoint, tmp_path, capsys, monkeypatch):
    """--out=~/x reaches the program unexpanded (the shell expands ~ only at the start of a word): read as the home
    folder, never as a folder named ~ in the current one."""
    home, elsewhere = tmp_path / "home", tmp_path / "cwd"
    home.mkdir(), elsewhere.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(elsewhere)
    (home / "photo.png").write_bytes(Path(sample[0]).read_bytes())
    (home / "model.pth").write_bytes(Path(checkpoint).read_bytes())
    code, err = run_in_process(capsys, "segment", "~/photo.png", "--point", "5,5", "--model=~/model.pth",
                               "--out=~/masks/m.png")
    assert code == 0, err
    assert (home / "masks" / "m.png").is_file() and (home / "masks" / "m_overlay.png").is_file()
    code, err = run_in_process(capsys, "everything", "~/photo.png", "--model=~/model.pth", "--out=~/all",
                               "--points-per-side", "2")
    assert code == 0, err
    assert (home / "all" / "masks.json").is_file() and list(elsewhere.iterdir()) == []
    code, err = run_in_process(capsys, "segment", "~/photo.png", "--point", "5,5", "--out=~no_such_user_here/m.png")
    assert code == 2 and "argument --out: '~no_such_user_here/m.png': ~no_such_user_here names no home folder" in err
    assert list(elsewhere.iterdir()) == []


def test_segment_explains_unreadable_images(tmp_path, checkpoint, capsys):
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    code, err = run_in_process(capsys, "segment", str(not_an_image), "--point", "1,1", "--model", checkpoint,
                               "--out", str(tmp_path / "m.png"))
    assert code == 1 and f"IMAGE: cannot read {not_an_image} as an image" in err
    code, err = run_in_process(capsys, "segment", str(tmp_path / "missing.jpg"), "--point", "1,1", "--out",
                               str(tmp_path / "m.png"))
    assert code == 1 and "missing.jpg does not exist" in err


def test_segment_explains_an_unknown_model_or_device(sample, tmp_path, capsys):
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "1,1", "--model", "vit_x",
                               "--out", str(tmp_path / "m.png"))
    assert code == 2 and "argument --model" in err and "'vit_x'" in err and "'tiny', 'vit_b'" in err
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "1,1", "--device", "gpu",
                               "--out", str(tmp_path / "m.png"))
    assert code == 2 and "argument --device: expected auto, cpu, mps, cuda or cuda:N, got 'gpu'" in err
    assert not (tmp_path / "m.png").exists()


def test_segment_without_a_model_uses_the_bundled_one_and_says_so(sample, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAM_FROM_SCRATCH_CACHE", str(tmp_path / "empty_cache"))  # no vit_b checkpoint there
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "60,70", "--device", "cpu",
                               "--out", str(tmp_path / "m.png"))
    assert code == 0, err
    assert "loading the model 'tiny' (no --model given: the bundled small model" in err
    assert (tmp_path / "m.png").exists()


def test_segment_wants_a_lossless_image_file_name(sample, tmp_path, capsys):
    code, err = run_in_process(capsys, "segment", sample[0], "--point", "1,1", "--out", str(tmp_path / "mask.txt"))
    assert code == 2 and f"--out: {tmp_path / 'mask.txt'} is not a lossless image file" in err
    assert ".png, .bmp or .tif" in err and err.count("\n") == 1
    assert not (tmp_path / "mask.txt").exists()


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


def test_everything_with_the_small_model_uses_the_filters_of_its_card(tmp_path, capsys):
    # Meta's 0.88 / 0.95 keep none of the small model's masks; its card recommends its own filters.
    from sam_from_scratch.config import TINY_CHECKPOINT
    from sam_from_scratch.training.scenes import HELDOUT_SEED, make_scene

    settings = json.loads((TINY_CHECKPOINT.parent / "card.json").read_text())["generator_settings"]
    scene = make_scene(HELDOUT_SEED, 11)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    code, err = run_in_process(capsys, "everything", str(tmp_path / "scene.png"), "--model", "tiny", "--device", "cpu",
                               "--points-per-side", "8", "--out", str(tmp_path / "out"))
    assert code == 0 and "using its card's filters" in err
    records = json.loads((tmp_path / "out" / "masks.json").read_text())
    expected = SamAutomaticMaskGenerator(from_pretrained("tiny", device="cpu"), points_per_side=8, **settings).generate(scene.image)
    assert len(records) == len(expected) >= len(scene.masks) // 2
    with pytest.warns(UserWarning, match="card recommends"):
        assert SamAutomaticMaskGenerator(from_pretrained("tiny", device="cpu"), points_per_side=8).generate(scene.image) == []

    # A threshold the user sets replaces its own value only: the stability filter and its offset stay the card's.
    code, err = run_in_process(capsys, "everything", str(tmp_path / "scene.png"), "--model", "tiny", "--device", "cpu",
                               "--points-per-side", "8", "--pred-iou-thresh", "0.2", "--out", str(tmp_path / "own"))
    assert code == 0 and "your predicted IoU > 0.2 with its card's stability" in err
    records = json.loads((tmp_path / "own" / "masks.json").read_text())
    looser = {**settings, "pred_iou_thresh": 0.2}
    expected = SamAutomaticMaskGenerator(from_pretrained("tiny", device="cpu"), points_per_side=8, **looser).generate(scene.image)
    assert len(records) == len(expected) >= len(scene.masks) // 2


def test_everything_refuses_to_overwrite_without_force(sample, checkpoint, tmp_path, capsys):
    (tmp_path / "masks.json").write_text("[]")
    code, err = run_in_process(capsys, "everything", sample[0], "--model", checkpoint, "--out", str(tmp_path))
    assert code == 1 and "masks.json already exist" in err and "--force" in err
    assert (tmp_path / "masks.json").read_text() == "[]"


def test_everything_never_writes_over_its_own_image_even_with_force(sample, checkpoint, tmp_path, capsys):
    image = tmp_path / "overlay.png"  # named like the overlay the command writes into its folder
    image.write_bytes(Path(sample[0]).read_bytes())
    code, err = run_in_process(capsys, "everything", str(image), "--model", checkpoint, "--out", str(tmp_path),
                               "--force")
    assert code == 2 and f"--out: the overlay would be written to {image}, which is the image being segmented" in err
    assert image.read_bytes() == Path(sample[0]).read_bytes()


def test_everything_explains_bad_settings(sample, checkpoint, tmp_path, capsys):
    # a count below one is an argparse error, before anything is read or loaded
    code, err = run_in_process(capsys, "everything", sample[0], "--model", checkpoint, "--device", "cpu",
                               "--out", str(tmp_path / "r"), "--points-per-side", "0")
    assert code == 2 and "argument --points-per-side: expected a whole number >= 1, got '0'" in err
    # so is a threshold outside [0, 1]
    code, err = run_in_process(capsys, "everything", sample[0], "--model", checkpoint, "--device", "cpu",
                               "--out", str(tmp_path / "r"), "--pred-iou-thresh", "1.5")
    assert code == 2 and "argument --pred-iou-thresh: expected a number in [0, 1], got '1.5'" in err
    assert "loading the model" not in err
    # a plan too large is the generator's refusal, in the command line's words
    code, err = run_in_process(capsys, "everything", sample[0], "--model", checkpoint, "--device", "cpu",
                               "--out", str(tmp_path / "r"), "--points-per-side", "100000")
    assert code == 2 and "error: --points-per-side, --points-per-batch: expected at most 100,000 decoder batches" in err
    assert "points_per_side" not in err and "MAX_PLANNED" not in err
    assert not (tmp_path / "r").exists()


def test_everything_says_which_filters_removed_every_mask(sample, tmp_path, capsys):
    # No predicted IoU is above 1: every candidate goes at the first filter, and the line says so.
    code, err = run_in_process(capsys, "everything", sample[0], "--model", "tiny", "--device", "cpu",
                               "--points-per-side", "4", "--pred-iou-thresh", "1", "--out", str(tmp_path / "r"))
    assert code == 0, err
    (line,) = [line for line in err.splitlines() if line.startswith("no masks")]
    assert line == ("no masks: 48 candidates; pred_iou_thresh 1 removed 48; the small model rates its masks low: "  # 4 x 4
                    "leave out --pred-iou-thresh for the filters measured for it")  # points, 3 masks each
    assert json.loads((tmp_path / "r" / "masks.json").read_text()) == []


def test_the_no_masks_line_gives_each_filter_its_threshold():
    from types import SimpleNamespace

    from sam_from_scratch.automatic_mask_generator import FILTER_COUNT_KEYS
    from sam_from_scratch.cli import explain_no_masks

    counts = dict.fromkeys(FILTER_COUNT_KEYS, 0) | {"candidates": 1024, "pred_iou_thresh": 1000,
                                                     "crop_edge": 4, "box_nms_thresh": 20}
    generator = SimpleNamespace(last_filter_counts=counts, pred_iou_thresh=0.88, stability_score_thresh=0.95,
                                box_nms_thresh=0.7, crop_nms_thresh=0.7, min_mask_region_area=0)
    assert explain_no_masks(generator) == ("no masks: 1024 candidates; pred_iou_thresh 0.88 removed 1000, "
                                           "crop_edge removed 4, box_nms_thresh 0.7 removed 20")
    generator.last_filter_counts = dict.fromkeys(FILTER_COUNT_KEYS, 0)
    assert explain_no_masks(generator) == "no masks: 0 candidates"


# ---- the command line as a whole ------------------------------------------------------------------------------------


def modules_imported(*args):
    """The modules `python -m sam_from_scratch ARGS` imports, from -X importtime, and its exit code."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "sam_from_scratch", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    names = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    return names, result


@pytest.mark.parametrize("args", [["--help"], ["--version"], *([command, "--help"] for command in (
    "demo", "download", "segment", "everything", "train-tiny", "finetune", "export-onnx"))])
def test_help_and_version_import_no_torch_and_no_numpy(args):
    names, result = modules_imported(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sam_from_scratch.cli" in names  # the measurement sees our imports
    heavy = sorted(n for n in names if n.split(".")[0] in ("torch", "numpy", "PIL", "torchvision", "matplotlib"))
    assert heavy == []


def test_version_is_the_package_version():
    import sam_from_scratch

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"python -m sam_from_scratch {sam_from_scratch.__version__}"


def test_the_program_calls_itself_as_it_was_started(capsys):
    result = run_cli("segment")  # missing arguments
    assert result.returncode == 2 and "usage: python -m sam_from_scratch segment" in result.stderr
    code, err = run_in_process(capsys, "segment")  # main() as the console script calls it
    assert code == 2 and "usage: sam-from-scratch segment" in err and "sam-from-scratch segment: error:" in err


def test_every_command_is_defined_here_and_its_help_ends_with_an_example(capsys):
    from sam_from_scratch.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert list(commands) == ["demo", "download", "segment", "everything", "train-tiny", "finetune", "export-onnx"]
    for name, sub in commands.items():
        lines = sub.format_help().rstrip().splitlines()
        example = lines.index("example:")
        assert f"sam-from-scratch {name}" in lines[example + 1], name
        assert f"\n    {name}" in parser.format_help(), name  # listed, with its help, by the top-level --help
    top = parser.format_help()
    assert "exit codes:" in top and "130" in top


def test_ctrl_c_prints_one_line_and_exits_130(capsys, monkeypatch):
    from sam_from_scratch import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_download", interrupted)
    code, err = run_in_process(capsys, "download", "vit_b")
    assert code == 130 and err == "interrupted\n"


# ---- train-tiny: the command line only (the training is tested in test_training.py) ---------------------------------


@pytest.fixture
def train_tiny_calls(monkeypatch):
    """Replace the training with a recorder of its arguments."""
    import sam_from_scratch.training as training

    calls = []

    def record(out, **kwargs):
        calls.append((out, kwargs))
        if kwargs["seed"] == 13:  # a stand-in for any refusal of the training's own checks
            raise ValueError("seed: expected a lucky seed, got 13")
        if kwargs["eval_only"] and not Path(out, "sam_tiny.pt").exists():
            raise FileNotFoundError(f"out: expected a trained model at {out}/sam_tiny.pt, found none")
        return {"miou": 0.5}

    monkeypatch.setattr(training, "train_tiny", record, raising=False)
    return calls


def test_train_tiny_writes_to_a_run_folder_by_default(train_tiny_calls, capsys):
    code, _ = run_in_process(capsys, "train-tiny")
    assert code == 0
    ((out, kwargs),) = train_tiny_calls
    assert out == Path("runs/train-tiny")
    assert kwargs == dict(steps=21600, seed=0, workers=2, threads=2, work_dir=Path("runs/train-tiny/state"),
                          fresh=False, eval_scenes=300, eval_only=False, progress=True)


def test_train_tiny_passes_its_options_on(train_tiny_calls, capsys, tmp_path):
    (tmp_path / "sam_tiny.pt").write_bytes(b"a model to measure")
    code, _ = run_in_process(capsys, "train-tiny", "--steps", "7", "--seed", "3", "--workers", "1", "--threads", "4",
                             "--out", str(tmp_path), "--work-dir", str(tmp_path / "w"), "--fresh",
                             "--eval-scenes", "5", "--eval-only")
    assert code == 0
    ((out, kwargs),) = train_tiny_calls
    assert out == tmp_path
    assert kwargs == dict(steps=7, seed=3, workers=1, threads=4, work_dir=tmp_path / "w", fresh=True,
                          eval_scenes=5, eval_only=True, progress=True)


def test_train_tiny_defaults_are_the_shipped_recipe():
    from sam_from_scratch.cli import build_parser
    from sam_from_scratch.training import TrainConfig

    args = build_parser().parse_args(["train-tiny"])
    assert args.steps == TrainConfig.steps


def test_train_tiny_replaces_the_bundled_model_only_when_asked(train_tiny_calls, capsys):
    from sam_from_scratch.config import TINY_CHECKPOINT

    code, _ = run_in_process(capsys, "train-tiny", "--replace-bundled")
    assert code == 0 and train_tiny_calls[0][0] == TINY_CHECKPOINT.parent
    # the resumable state stays in the run folder: nothing but the model and its card goes into the package
    assert train_tiny_calls[0][1]["work_dir"] == Path("runs/train-tiny/state")

    code, err = run_in_process(capsys, "train-tiny", "--replace-bundled", "--out", "elsewhere")
    assert code == 2 and "not allowed with argument" in err
    assert len(train_tiny_calls) == 1


def test_train_tiny_reports_the_trainings_refusals_in_one_line(train_tiny_calls, capsys, tmp_path):
    from sam_from_scratch.training import TrainConfig

    code, err = run_in_process(capsys, "train-tiny", "--seed", "13")
    assert code == 2 and err == "error: seed: expected a lucky seed, got 13\n"
    # workers that do not divide a step's images are refused before the expected time is printed
    code = main(["train-tiny", "--workers", "5"])
    out, err = capsys.readouterr()
    assert code == 2 and err == f"error: workers: expected a divisor of images_per_step={TrainConfig().images_per_step}, got 5\n"
    assert out == "" and len(train_tiny_calls) == 1
    code, err = run_in_process(capsys, "train-tiny", "--out", str(tmp_path / "none"), "--eval-only")
    assert code == 1 and err.startswith("error: out: expected a trained model at") and err.count("\n") == 1


@pytest.mark.parametrize("option", ["--steps", "--workers", "--threads", "--eval-scenes"])
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_train_tiny_refuses_counts_below_one(train_tiny_calls, capsys, option, value):
    code, err = run_in_process(capsys, "train-tiny", option, value)
    assert code == 2 and f"argument {option}: expected a whole number >= 1, got '{value}'" in err
    assert train_tiny_calls == []


@pytest.mark.parametrize("value", ["-1", "1.5", "x"])
def test_train_tiny_refuses_a_seed_that_is_not_a_whole_number_naming_the_option(train_tiny_calls, capsys, value):
    code, err = run_in_process(capsys, "train-tiny", "--seed", value)
    assert code == 2 and f"argument --seed: expected a whole number >= 0, got '{value}'" in err
    assert train_tiny_calls == []


@pytest.mark.parametrize("value", ["-1", "1.5", "x"])
def test_finetune_refuses_a_seed_that_is_not_a_whole_number_the_way_train_tiny_does(capsys, tmp_path, value):
    code, err = run_in_process(capsys, "finetune", "--model", "tiny", "--data", str(tmp_path), "--out",
                               str(tmp_path / "run"), "--seed", value)
    assert code == 2 and f"argument --seed: expected a whole number >= 0, got '{value}'" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_train_tiny_calls_the_training_with_arguments_it_accepts():
    import inspect

    from sam_from_scratch.training import train_tiny

    inspect.signature(train_tiny).bind(Path("out"), steps=1, seed=0, workers=1, threads=1, work_dir=Path("w"),
                                       fresh=False, eval_scenes=1, eval_only=False, progress=True)


def test_quick_is_the_short_recipe_in_its_own_folder(train_tiny_calls, capsys, tmp_path):
    from sam_from_scratch.cli import QUICK_STEPS, build_parser

    args = build_parser().parse_args(["train-tiny", "--quick"])
    assert (args.steps, args.workers, args.quick) == (QUICK_STEPS, 2, True) and QUICK_STEPS == 2000
    for order in (["--quick", "--workers", "1"], ["--workers", "1", "--quick"]):  # what the user sets wins
        assert build_parser().parse_args(["train-tiny", *order]).workers == 1

    code, _ = run_in_process(capsys, "train-tiny", "--quick")
    assert code == 0
    ((out, kwargs),) = train_tiny_calls
    assert out == Path("runs/train-tiny-quick") and kwargs["work_dir"] == Path("runs/train-tiny-quick/state")
    assert (kwargs["steps"], kwargs["workers"]) == (2000, 2)
    assert run_in_process(capsys, "train-tiny", "--quick", "--out", str(tmp_path))[0] == 0
    assert train_tiny_calls[1][0] == tmp_path


def test_quick_refuses_steps_and_the_bundled_folder(train_tiny_calls, capsys):
    code, err = run_in_process(capsys, "train-tiny", "--quick", "--steps", "50")
    assert code == 2 and "argument --steps: not allowed with argument --quick" in err
    code, err = run_in_process(capsys, "train-tiny", "--quick", "--replace-bundled")
    assert code == 2 and err.startswith("error: --quick trains a worse model than the bundled one") and err.count("\n") == 1
    assert train_tiny_calls == []


def test_the_card_records_the_quick_recipe():
    from sam_from_scratch.config import TINY_CHECKPOINT

    card = json.loads((TINY_CHECKPOINT.parent / "card.json").read_text())
    quick = card["quick"]
    assert quick["steps"] == 2000 and quick["training_time"]["workers"] == 2 and "--quick" in quick["command"]
    assert 0 < quick["training_time"]["wall_seconds"] < card["training_time"]["wall_seconds"]
    for key, value in quick["evaluation"].items():  # a worse model than the shipped one, on every figure
        assert 0 < value < card["evaluation"][key], key


def test_the_expected_time_uses_the_cards_rate_for_as_many_workers(monkeypatch, tmp_path):
    from sam_from_scratch import config
    from sam_from_scratch.cli import expected_training_time

    card = json.loads((config.TINY_CHECKPOINT.parent / "card.json").read_text())
    shipped = card["training_time"]["wall_seconds"] / card["steps"]
    quick = card["quick"]["training_time"]["wall_seconds"] / card["quick"]["steps"]
    line = expected_training_time(card["steps"], card["training_time"]["workers"], 300)
    assert line.startswith("expected time: about ") and f"{shipped:.2f} s a step" in line and "shipped recipe" in line
    line = expected_training_time(2000, card["quick"]["training_time"]["workers"], 300)
    assert f"about {round(2000 * quick / 60)} min for 2,000 steps" in line and "quick recipe" in line
    assert "an estimate" in expected_training_time(2000, 8, 300)  # no figure on the card for 8 workers

    del card["quick"]  # a card without the quick entry: 2 workers get the estimate of 1.8 steps a second
    (tmp_path / "card.json").write_text(json.dumps(card))
    monkeypatch.setattr(config, "TINY_CHECKPOINT", tmp_path / "sam_tiny.pt")
    line = expected_training_time(1800, 2, 300)
    assert "about 17 min for 1,800 steps" in line and "an estimate" in line and "1.8 steps a second" in line


def test_train_tiny_says_how_long_it_should_take_and_how_long_it_took(tmp_path, capsys):
    # a real run of two steps, measured on two scenes
    code = main(["train-tiny", "--steps", "2", "--workers", "1", "--threads", "1", "--eval-scenes", "2",
                 "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("expected time: about ") and "for 2 steps" in lines[0]
    assert re.fullmatch(r"train-tiny took \d+ s", lines[-1]), lines[-1]
    assert (tmp_path / "sam_tiny.pt").exists() and json.loads((tmp_path / "card.json").read_text())["steps"] == 2


# ---- export-onnx ----------------------------------------------------------------------------------------------------


@pytest.fixture
def export_calls(monkeypatch):
    """Replace the ONNX export and quantization with recorders that write a stand-in file."""
    import sam_from_scratch.onnx_export as onnx_export

    calls = []

    def export(model, path, **kwargs):
        calls.append(("export", model, Path(path), kwargs))
        Path(path).write_bytes(b"float32 graph")
        return Path(path)

    def quantize(source, path, overwrite=False):
        calls.append(("quantize", Path(source), Path(path), overwrite))
        Path(path).write_bytes(b"int8 graph")
        return Path(path)

    monkeypatch.setattr(onnx_export, "export_onnx", export)
    monkeypatch.setattr(onnx_export, "quantize_onnx", quantize)
    return calls


def test_export_onnx_writes_a_file_onnxruntime_runs(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="running the export needs the onnx extra")
    from sam_from_scratch.training.scenes import HELDOUT_SEED, make_scene

    out = tmp_path / "decoder.onnx"
    code, err = run_in_process(capsys, "export-onnx", "--model", "tiny", "--out", str(out))
    assert code == 0, err
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()][:3] == ["image_embeddings", "point_coords", "point_labels"]

    predictor = SamPredictor(from_pretrained("tiny", device="cpu"))
    predictor.set_image(make_scene(HELDOUT_SEED, 3).image)
    h, w = predictor.original_size
    masks, scores, _ = session.run(None, {
        "image_embeddings": predictor.get_image_embedding().numpy(),
        "point_coords": np.array([[[40.0, 50.0], [0.0, 0.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0]], np.float32),
        "mask_input": np.zeros((1, 1, *predictor.model.prompt_encoder.mask_input_size), np.float32),
        "has_mask_input": np.zeros(1, np.float32),
        "orig_im_size": np.array([h, w], np.float32),
    })
    assert masks.shape == (1, 1, h, w) and scores.shape == (1, 1) and np.isfinite(masks).all()


def test_export_onnx_refuses_to_overwrite_without_force(tmp_path, capsys, export_calls):
    out = tmp_path / "decoder.onnx"
    out.write_bytes(b"keep me")
    code, err = run_in_process(capsys, "export-onnx", "--out", str(out))
    assert code == 1 and f"{out} already exist(s); add --force to overwrite" in err and out.read_bytes() == b"keep me"
    out.unlink()
    (tmp_path / "decoder_int8.onnx").write_bytes(b"keep me too")  # --quantize also writes this one
    code, err = run_in_process(capsys, "export-onnx", "--out", str(out), "--quantize")
    assert code == 1 and "decoder_int8.onnx already exist(s)" in err and not out.exists()
    assert export_calls == [] and "loading the model" not in err  # refused before any work


def test_export_onnx_wants_an_onnx_file_name(tmp_path, capsys, export_calls):
    code, err = run_in_process(capsys, "export-onnx", "--out", str(tmp_path / "decoder.txt"))
    assert code == 2 and err.strip() == f"error: --out: expected a file name ending in .onnx, got {tmp_path / 'decoder.txt'}"
    assert export_calls == [] and not (tmp_path / "decoder.txt").exists()


def test_export_onnx_writes_all_masks_or_stability_scores_on_request(tmp_path, capsys, export_calls):
    code = main(["export-onnx", "--out", str(tmp_path / "all.onnx"), "--multimask", "--use-stability-score"])
    assert code == 0, capsys.readouterr().err
    (_, _, _, kwargs), = export_calls
    assert kwargs["return_single_mask"] is False and kwargs["use_stability_score"] is True


def test_export_onnx_with_force_quantize_and_opset(tmp_path, capsys, export_calls):
    from sam_from_scratch.modeling.sam import Sam

    out = tmp_path / "decoder.onnx"
    out.write_bytes(b"old")
    code = main(["export-onnx", "--out", str(out), "--force", "--quantize", "--opset", "19"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert stdout.startswith(f"wrote {out} (0.0 MB) and {tmp_path / 'decoder_int8.onnx'} (0.0 MB)")
    (_, model, path, kwargs), quantized = export_calls
    assert isinstance(model, Sam) and model.device.type == "cpu" and model.mask_decoder.iou_token.weight.dtype == torch.float32
    assert (path, kwargs) == (out, {"opset": 19, "overwrite": True, "return_single_mask": True,
                                    "use_stability_score": False})
    assert quantized == ("quantize", out, tmp_path / "decoder_int8.onnx", True)
    assert out.read_bytes() == b"float32 graph" and (tmp_path / "decoder_int8.onnx").read_bytes() == b"int8 graph"


def test_export_onnx_takes_the_weights_of_a_checkpoint(checkpoint, model, tmp_path, capsys, export_calls):
    code, err = run_in_process(capsys, "export-onnx", "--model", "tiny", "--checkpoint", checkpoint,
                               "--out", str(tmp_path / "d.onnx"))
    assert code == 0, err
    exported = export_calls[0][1].state_dict()
    assert all(torch.equal(exported[key], value) for key, value in model.state_dict().items())
    code, err = run_in_process(capsys, "export-onnx", "--model", checkpoint, "--checkpoint", checkpoint,
                               "--out", str(tmp_path / "e.onnx"))
    assert code == 2 and "--checkpoint: expected --model to name a variant" in err


def test_export_onnx_without_the_onnx_extra_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if it were not installed
    code, err = run_in_process(capsys, "export-onnx", "--out", str(tmp_path / "d.onnx"))
    assert code == 2 and err.count("\n") == 1
    assert "missing: onnxscript" in err and 'pip install "sam-from-scratch[onnx]"' in err
    assert not (tmp_path / "d.onnx").exists()


def test_export_onnx_on_a_torch_too_old_for_the_exporter_says_so(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "2.7.1+cpu")  # its exporter stops on the crop to the image's size
    code, err = run_in_process(capsys, "export-onnx", "--out", str(tmp_path / "d.onnx"))
    assert code == 2 and err.count("\n") == 1
    assert err == 'error: export-onnx needs torch 2.8 or newer (got 2.7.1+cpu): pip install "sam-from-scratch[onnx]"\n'
    assert not (tmp_path / "d.onnx").exists()


def test_export_onnx_explains_bad_arguments(tmp_path, capsys, export_calls):
    from sam_from_scratch.cli import ONNX_MAX_OPSET, ONNX_MIN_OPSET
    from sam_from_scratch.onnx_export import DEFAULT_OPSET, MAX_OPSET

    assert (ONNX_MIN_OPSET, ONNX_MAX_OPSET) == (DEFAULT_OPSET, MAX_OPSET)
    for opset in ("17", "26"):
        code, err = run_in_process(capsys, "export-onnx", "--out", str(tmp_path / "d.onnx"), "--opset", opset)
        assert code == 2 and f"argument --opset: expected a whole number from 18 to 25, got '{opset}'" in err
    code, err = run_in_process(capsys, "export-onnx")
    assert code == 2 and "the following arguments are required: --out" in err
    (tmp_path / "file").write_text("not a folder")
    code, err = run_in_process(capsys, "export-onnx", "--out", str(tmp_path / "file" / "d.onnx"))
    assert code == 2 and "--out:" in err and "is a file" in err
    assert export_calls == []


# ---- the pictures: drawn as the widgets draw them --------------------------------------------------------------------


def test_prompt_overlay_tints_the_mask_and_marks_the_prompts():
    from sam_from_scratch.cli import draw_prompt_overlay
    from sam_from_scratch.interactive.drawing import BOX_COLOR, NEGATIVE_COLOR, POSITIVE_COLOR, blend, object_colors

    image = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[10:50, 10:40] = True
    picture = draw_prompt_overlay(image, mask, [(25.0, 30.0)], [(60.0, 30.0)], (5.0, 5.0, 45.0, 55.0))
    rgb = lambda color: [int(color[i : i + 2], 16) for i in (1, 3, 5)]  # "#rrggbb" -> [r, g, b]
    assert picture[30, 25].tolist() == rgb(POSITIVE_COLOR)
    assert picture[30, 60].tolist() == rgb(NEGATIVE_COLOR)
    assert picture[30, 5].tolist() == rgb(BOX_COLOR)
    tinted = blend(image, [(mask, object_colors(1)[0])])
    assert picture[20, 15].tolist() == tinted[20, 15].tolist() != image[20, 15].tolist()  # inside the mask
    assert picture[20, 70].tolist() == image[20, 70].tolist()  # outside everything


def test_everything_overlay_draws_small_masks_over_large_ones():
    from sam_from_scratch.cli import draw_everything_overlay
    from sam_from_scratch.interactive.drawing import object_colors
    from sam_from_scratch.utils.amg import mask_to_rle_pytorch

    image = np.zeros((40, 40, 3), np.uint8)
    small, large = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    small[15:25, 15:25] = True
    large[5:35, 5:35] = True
    records = [{"segmentation": rle, "area": int(m.sum())}
               for m, rle in zip((small, large), mask_to_rle_pytorch(torch.as_tensor(np.stack([small, large]))))]
    picture = draw_everything_overlay(image, records)
    large_color, small_color = object_colors(2)  # colours go to the masks largest first
    assert picture[5, 5].tolist() == large_color.tolist()  # the large mask's outline
    assert picture[15, 15].tolist() == small_color.tolist()  # the small one's outline, drawn over the large one


def test_the_package_imports_torch_only_when_its_api_is_used():
    code = ("import sys, sam_from_scratch as s\n"
            "print(s.__version__, 'torch' in sys.modules)\n"
            "print(s.SamPredictor.__module__, 'torch' in sys.modules)\n"
            "print(sorted(s.__all__) == sorted(n for n in dir(s) if n in s.__all__) == sorted(s.__all__))\n"
            "print(all(hasattr(s, n) for n in s.__all__))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import sam_from_scratch

    assert result.stdout.split("\n")[:4] == [f"{sam_from_scratch.__version__} False", "sam_from_scratch.predictor True",
                                             "True", "True"]
    with pytest.raises(AttributeError, match="has no attribute 'SamPredicter'"):
        sam_from_scratch.SamPredicter
