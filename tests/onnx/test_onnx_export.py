"""The ONNX export of the prompt side: onnxruntime gives our model's answers, and our SamOnnxModel the official one's.

One export of the small model per run (torch's default dynamo exporter: about 15-30 s on 2 cores); every
comparison reuses it. vit_b is not exported here: its graph is the same code with larger weights, and a second
export would double the cost. SamOnnxModel itself is compared with the official SamOnnxModel on the small
configuration, whose input size (96) and mask size (48) are not the 1024 and 256 that code could assume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the ONNX export needs the onnx extra: pip install 'sam-from-scratch[onnx]'")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (the onnx extra)")
ort = pytest.importorskip("onnxruntime", reason="running the export needs onnxruntime (the onnx extra)")

from conftest import official_sam_for_config  # noqa: E402
from segment_anything.utils.onnx import SamOnnxModel as OfficialOnnxModel  # noqa: E402

from sam_from_scratch.config import CONFIGS, TINY_CHECKPOINT  # noqa: E402
from sam_from_scratch.errors import SamInputError  # noqa: E402
from sam_from_scratch import onnx_export  # noqa: E402
from sam_from_scratch.onnx_export import (  # noqa: E402
    DEFAULT_OPSET, INPUT_NAMES, MAX_OPSET, OUTPUT_NAMES, export_onnx, quantize_onnx,
)
from sam_from_scratch.utils.onnx import SamOnnxModel  # noqa: E402

# Mask logits of the small model reach about 50: float32 rounding in a different order of operations gives
# differences of a few 1e-5 there, so logits are compared to 1e-4 plus 1e-5 of their size; scores to 1e-4.
LOGIT_TOLERANCE = dict(atol=1e-4, rtol=1e-5)
SCORE_TOLERANCE = dict(atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def tiny():
    from sam_from_scratch import from_pretrained

    if not TINY_CHECKPOINT.exists():
        pytest.skip("the bundled small model is missing from sam_from_scratch/data/tiny")
    return from_pretrained("tiny", device="cpu")


@pytest.fixture(scope="module")
def official_tiny(tiny):
    official = official_sam_for_config(CONFIGS["tiny"])
    official.load_state_dict(tiny.state_dict())
    return official.eval()


@pytest.fixture(scope="module")
def embedding(tiny):
    """The small model's embedding of a generated scene (96 x 96), and the scene's size."""
    from sam_from_scratch import SamPredictor
    from sam_from_scratch.training.scenes import HELDOUT_SEED, SceneConfig, make_scene

    image = make_scene(HELDOUT_SEED, 5, SceneConfig(image_size=96, min_objects=4, max_objects=5)).image
    predictor = SamPredictor(tiny)
    predictor.set_image(image)
    return predictor.get_image_embedding(), predictor


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    return export_onnx(tiny, tmp_path_factory.mktemp("onnx") / "sam_tiny.onnx")


@pytest.fixture(scope="module")
def session(exported):
    return ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])


def prompt(tiny, embedding, clicks, with_mask, box=False, orig_size=(70.0, 45.0), seed=0):
    """The six inputs for `clicks` random clicks (first positive, then alternating), as the official demo
    sends them: coordinates in the resized frame, then a padding point, or the box's two corners."""
    rng = np.random.default_rng(seed)
    size = tiny.image_encoder.img_size
    coords = rng.uniform(0, size * 0.9, (clicks, 2))
    labels = np.arange(clicks) % 2 == 0
    if box:
        coords = np.concatenate([coords, [[10.0, 12.0], [60.0, 50.0]]])
        labels = np.concatenate([labels, [2, 3]])
    else:
        coords = np.concatenate([coords, [[0.0, 0.0]]])
        labels = np.concatenate([labels, [-1]])
    mask_input = rng.normal(0, 3, (1, 1, *tiny.prompt_encoder.mask_input_size)) if with_mask else np.zeros(
        (1, 1, *tiny.prompt_encoder.mask_input_size))
    return {
        "image_embeddings": embedding[0].numpy(),
        "point_coords": coords[None].astype(np.float32),
        "point_labels": labels[None].astype(np.float32),
        "mask_input": mask_input.astype(np.float32),
        "has_mask_input": np.array([float(with_mask)], dtype=np.float32),
        "orig_im_size": np.array(orig_size, dtype=np.float32),
    }


def run_torch(module, inputs):
    return [t.numpy() for t in module(*(torch.from_numpy(inputs[name]) for name in INPUT_NAMES))]


def test_the_graph_has_the_official_names_and_a_dynamic_point_count(session):
    assert [i.name for i in session.get_inputs()] == INPUT_NAMES
    assert [o.name for o in session.get_outputs()] == OUTPUT_NAMES
    points = {i.name: i.shape for i in session.get_inputs()}
    assert isinstance(points["point_coords"][1], str) and points["point_coords"][1] == points["point_labels"][1]


CASES = [(clicks, with_mask) for clicks in (1, 2, 9) for with_mask in (False, True)]


@pytest.mark.parametrize("clicks,with_mask", CASES, ids=[f"{c} clicks{', mask' if m else ''}" for c, m in CASES])
def test_onnxruntime_equals_our_model(tiny, embedding, session, clicks, with_mask):
    inputs = prompt(tiny, embedding, clicks, with_mask)
    masks, scores, low_res = session.run(None, inputs)
    expected = run_torch(SamOnnxModel(tiny, return_single_mask=True), inputs)
    assert masks.shape == (1, 1, 70, 45) and scores.shape == (1, 1) and low_res.shape == (1, 1, 48, 48)
    np.testing.assert_allclose(masks, expected[0], **LOGIT_TOLERANCE)
    np.testing.assert_allclose(scores, expected[1], **SCORE_TOLERANCE)
    np.testing.assert_allclose(low_res, expected[2], **LOGIT_TOLERANCE)


def test_the_official_scripts_exporter_takes_the_sped_up_model(tiny, embedding, tmp_path):
    """Meta's export script traces with torch's older exporter (dynamo=False), which needs shapes it can
    record: the fast decoder must give them."""
    import warnings

    inputs = prompt(tiny, embedding, 2, True)
    path = tmp_path / "legacy.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's and the deprecation's warnings
        torch.onnx.export(SamOnnxModel(tiny, return_single_mask=True),
                          tuple(torch.from_numpy(inputs[n]) for n in INPUT_NAMES),
                          str(path), opset_version=17, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                          dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # the original size stays an input, as in Meta's file: masks come at the size given, not the traced one
    assert [i.name for i in session.get_inputs()] == INPUT_NAMES
    for size in ((70.0, 45.0), (40.0, 130.0)):
        inputs["orig_im_size"] = np.array(size, dtype=np.float32)
        masks, scores, _ = session.run(None, inputs)
        expected = run_torch(SamOnnxModel(tiny, return_single_mask=True), inputs)
        assert masks.shape == (1, 1, *map(int, size))
        np.testing.assert_allclose(masks, expected[0], **LOGIT_TOLERANCE)
        np.testing.assert_allclose(scores, expected[1], **SCORE_TOLERANCE)


def test_onnxruntime_with_a_box_and_another_original_size(tiny, embedding, session):
    inputs = prompt(tiny, embedding, 1, False, box=True, orig_size=(40.0, 130.0))
    masks, scores, low_res = session.run(None, inputs)
    expected = run_torch(SamOnnxModel(tiny, return_single_mask=True), inputs)
    assert masks.shape == (1, 1, 40, 130)
    np.testing.assert_allclose(masks, expected[0], **LOGIT_TOLERANCE)
    np.testing.assert_allclose(scores, expected[1], **SCORE_TOLERANCE)


OPTIONS = {
    "single mask": dict(return_single_mask=True),
    "four masks": dict(return_single_mask=False),
    "stability scores": dict(return_single_mask=True, use_stability_score=True),
    "extra metrics": dict(return_single_mask=False, return_extra_metrics=True),
}


@pytest.mark.parametrize(
    "option,clicks,with_mask,box",
    [("single mask", 1, False, False), ("four masks", 3, True, False), ("stability scores", 1, False, True),
     ("extra metrics", 2, True, False)],
)
def test_our_onnx_model_equals_the_official_one(tiny, official_tiny, embedding, option, clicks, with_mask, box):
    inputs = prompt(tiny, embedding, clicks, with_mask, box=box, seed=clicks)
    ours = run_torch(SamOnnxModel(tiny, **OPTIONS[option]), inputs)
    official = run_torch(OfficialOnnxModel(official_tiny, **OPTIONS[option]), inputs)
    assert len(ours) == len(official)
    for mine, theirs in zip(ours, official):
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, **LOGIT_TOLERANCE)


def test_a_single_click_equals_the_predictor(tiny, embedding, session):
    """The file answers a click as SamPredictor does (best of the three masks), at the original size."""
    _, predictor = embedding
    point = np.array([[40.0, 30.0]])  # original-image pixels (the scene is 96 x 96)
    masks, scores, low_res = predictor.predict(point_coords=point, point_labels=np.array([1]), return_logits=True)
    best = int(np.argmax(scores))
    inputs = prompt(tiny, embedding, 1, False, orig_size=predictor.original_size)
    inputs["point_coords"][0, 0] = predictor.transform.apply_coords(point, predictor.original_size)[0]
    inputs["point_labels"][0, 0] = 1
    onnx_masks, onnx_scores, onnx_low_res = session.run(None, inputs)
    np.testing.assert_allclose(onnx_scores[0, 0], scores[best], **SCORE_TOLERANCE)
    np.testing.assert_allclose(onnx_low_res[0, 0], low_res[best], **LOGIT_TOLERANCE)
    np.testing.assert_allclose(onnx_masks[0, 0], masks[best], **LOGIT_TOLERANCE)


def test_int8_file_is_smaller_and_its_masks_close(tiny, embedding, exported, session, tmp_path):
    quantized = quantize_onnx(exported, tmp_path / "sam_tiny_int8.onnx")
    assert quantized.stat().st_size < 0.7 * exported.stat().st_size
    int8 = ort.InferenceSession(str(quantized), providers=["CPUExecutionProvider"])
    ious = []
    for seed in range(8):  # single clicks; the small model answers some with an empty mask, not compared
        inputs = prompt(tiny, embedding, 1, False, orig_size=(96.0, 96.0), seed=seed)
        a, b = session.run(None, inputs)[0] > 0, int8.run(None, inputs)[0] > 0
        if a.any():
            ious.append((a & b).sum() / (a | b).sum())
    assert len(ious) >= 3
    print(f"\nint8 vs float32 mask IoU per click: {np.round(ious, 3)}")
    # 8-bit weights move the small model's mask edges: most masks barely change, a small one may lose a third
    assert np.median(ious) > 0.9 and min(ious) > 0.5, ious


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(model="tiny"), r"^model: expected a Sam"),
        (dict(opset=11), r"^opset: expected an integer from 18 to 25, got int 11\.$"),
        (dict(opset=26), r"^opset: expected an integer from 18 to 25, got int 26\.$"),
        (dict(opset="18"), r"^opset: expected an integer from 18 to 25, got str '18'\.$"),
        (dict(opset=18.0), r"^opset: expected an integer from 18 to 25, got float 18\.0\.$"),
        (dict(return_single_mask="False"), r"^return_single_mask: expected True or False, got str 'False'\.$"),
        (dict(quantize="no"), r"^quantize: expected True or False, got str 'no'\.$"),
        (dict(use_stability_score=None), r"^use_stability_score: expected True or False, got NoneType None\.$"),
        (dict(overwrite="yes"), r"^overwrite: expected True or False, got str 'yes'\.$"),
        (dict(path="/no/such/folder/sam.onnx"), r"^path: the folder /no/such/folder does not exist"),
        (dict(path=None), r"^path: expected a file name for the ONNX model \(e\.g\. 'sam\.onnx'\), got None"),
        (dict(path="/"), r"^path: expected a file name for the ONNX model, got /, which is a folder"),
        (dict(path="sam.txt"), r"^path: expected a file name ending in \.onnx, got 'sam\.txt'\.$"),
    ],
)
def test_bad_arguments_are_named(tiny, tmp_path, kwargs, match):
    arguments = dict(model=tiny, path=tmp_path / "sam.onnx") | kwargs
    model, path = arguments.pop("model"), arguments.pop("path")
    with pytest.raises(SamInputError, match=match):
        export_onnx(model, path, **arguments)


@pytest.mark.parametrize("version, expected", [("2.7.1+cpu", (2, 7)), ("2.10.0a0+git", (2, 10)),
                                               ("2.8.0.dev20250101", (2, 8)), ("3.0.0", (3, 0)), ("2.7+cu118", (2, 7))])
def test_the_torch_version_is_read_as_major_and_minor(monkeypatch, version, expected):
    from sam_from_scratch.onnx_export import torch_version

    monkeypatch.setattr(torch, "__version__", version)
    assert torch_version() == expected


def test_a_torch_too_old_for_the_exporter_is_named_before_the_export(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.7.1")  # torch 2.7's exporter cannot trace the crop to the image
    with pytest.raises(ImportError, match=r"^export_onnx needs torch 2\.8 or newer, got torch 2\.7\.1: pip install "
                                          r"'sam-from-scratch\[onnx\]' brings one$") as caught:
        export_onnx(tiny, tmp_path / "sam.onnx")
    assert caught.value.name == "torch" and list(tmp_path.iterdir()) == []
    monkeypatch.setattr(torch, "__version__", "2.10.0a0+git")  # a minor version of two digits, a build tag
    assert export_onnx(tiny, tmp_path / "sam.onnx").stat().st_size > 100_000


def test_a_path_in_a_file_is_named_and_a_tilde_is_expanded(tiny, tmp_path, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    cases = [
        (a_file / "sam.onnx",
         rf"^path: expected a file name in a folder, got '.*sam\.onnx', but {a_file} is a file\.$"),
        (a_file / "sub" / "sam.onnx", rf"^path: expected a file name in a folder, got '.*sam\.onnx', but {a_file}/sub "
                                      rf"cannot be a folder: {a_file} is a file\.$"),
        ("~/missing/sam.onnx", rf"^path: the folder {tmp_path}/missing does not exist\.$"),
        ("~/notes.txt", rf"^path: expected a file name not in use, got '{a_file}', but notes\.txt already exists"),
        ("~no_such_user_of_sam_from_scratch/sam.onnx", r"^path: expected a file name for the ONNX model, got "
         r"'~no_such_user_of_sam_from_scratch/sam\.onnx', whose ~no_such_user_of_sam_from_scratch names no home "
         r"folder here\. Write the path out in full\.$"),
    ]
    monkeypatch.setenv("HOME", str(tmp_path))  # ~ is the user's home folder, as in a shell
    for path, match in cases:  # all refused before the export: none of them takes seconds
        with pytest.raises(SamInputError, match=match):
            export_onnx(tiny, path)
    with pytest.raises(SamInputError, match=rf"^source: expected an ONNX file .*, got '{tmp_path}/missing\.onnx', "
                                            r"which does not exist\.$"):
        quantize_onnx("~/missing.onnx", tmp_path / "int8.onnx")
    assert a_file.read_text() == "mine" and list(tmp_path.iterdir()) == [a_file]


def test_the_default_export_has_the_default_opset(exported):
    import onnx

    assert [o.version for o in onnx.load(exported).opset_import if o.domain == ""] == [DEFAULT_OPSET]


@pytest.mark.parametrize("name", ["my_checkpoint.pth", "sam.onnx", "notes.txt"])
@pytest.mark.parametrize("quantize", [False, True])
def test_an_existing_file_is_kept_unless_overwrite_is_true(tiny, tmp_path, name, quantize):
    mine = tmp_path / name
    mine.write_bytes(b"my own file")
    with pytest.raises(SamInputError, match=rf"^path: expected a file name not in use, got '.*{name}', but {name} "
                                            r"already exists there\. Nothing was saved: choose another name, or call "
                                            r"export_onnx\(model, path, overwrite=True\) to overwrite\.$"):
        export_onnx(tiny, mine, quantize=quantize)
    assert mine.read_bytes() == b"my own file" and list(tmp_path.iterdir()) == [mine]


def test_overwrite_true_replaces_the_file_and_the_newest_opset_is_written(tiny, embedding, tmp_path):
    import onnx

    path = tmp_path / "sam.onnx"
    path.write_bytes(b"an older export")
    # numpy integers and booleans, and 0/1, count as the numbers and switches they are
    assert export_onnx(tiny, path, opset=np.int64(MAX_OPSET), overwrite=1, return_single_mask=np.False_,
                       use_stability_score=0) == path
    assert [o.version for o in onnx.load(path).opset_import if o.domain == ""] == [MAX_OPSET]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    masks, scores, _ = session.run(None, prompt(tiny, embedding, 1, False))
    expected = run_torch(SamOnnxModel(tiny, return_single_mask=False), prompt(tiny, embedding, 1, False))[1]
    assert scores.shape == expected.shape == (1, 4)  # all four outputs: return_single_mask=np.False_ was read as False
    np.testing.assert_allclose(scores, expected, **SCORE_TOLERANCE)


def test_an_opset_the_exporter_does_not_reach_writes_nothing(tiny, tmp_path, monkeypatch):
    # Were MAX_OPSET ahead of torch's exporter, which then keeps opset 18 and only logs its failure, the file
    # would say 18 where the caller asked for 26: refused instead, before anything is written.
    monkeypatch.setattr(onnx_export, "MAX_OPSET", MAX_OPSET + 1)
    with pytest.raises(RuntimeError, match=rf"^opset: torch's exporter wrote opset 18, not {MAX_OPSET + 1}; "
                                           "nothing was saved"):
        export_onnx(tiny, tmp_path / "sam.onnx", opset=MAX_OPSET + 1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quantize", [False, True])
def test_a_write_that_fails_leaves_no_file_behind(tiny, tmp_path, monkeypatch, quantize):
    """A full disk halfway through: no broken file at the path (an app could load it, and a second try would
    need overwrite=True to replace it), and the next try writes."""
    import errno

    import onnxruntime.quantization

    def full_disk(*args, **kwargs):
        Path(args[1] if quantize else args[2]).write_bytes(b"half a graph")  # the file being written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", full_disk) if quantize else \
        monkeypatch.setattr(onnx_export, "_export", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_onnx(tiny, tmp_path / "sam.onnx", quantize=quantize)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert export_onnx(tiny, tmp_path / "sam.onnx", quantize=quantize).stat().st_size > 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["sam.onnx"]


def test_a_folder_that_cannot_be_written_to_is_said_before_the_export(tiny, monkeypatch):
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc, where no one may create a file")
    monkeypatch.setattr(onnx_export, "_export", lambda *args: pytest.fail("the export ran"))
    with pytest.raises(SamInputError, match=r"^path: expected a file name in a folder you can write to, got "
                                            r"'/proc/sam\.onnx': .*Nothing was saved\.$"):
        export_onnx(tiny, "/proc/sam.onnx")


def test_the_callers_training_modes_are_given_back(tiny, tmp_path):
    import copy

    model = copy.deepcopy(tiny).train()
    model.image_encoder.eval()  # a frozen encoder, a decoder in training
    modes = [module.training for module in model.modules()]
    export_onnx(model, tmp_path / "sam.onnx")
    assert [module.training for module in model.modules()] == modes


def test_a_model_with_one_part_in_bfloat16_is_refused(tiny, tmp_path):
    import copy

    model = copy.deepcopy(tiny)
    model.prompt_encoder.to(torch.bfloat16)  # onnxruntime would refuse the file's bfloat16 convolution
    with pytest.raises(SamInputError, match=r"^model: expected float32 weights for the export, got torch\.bfloat16 "
                                            r"in the prompt encoder or mask decoder; call model\.float\(\) first\.$"):
        export_onnx(model, tmp_path / "sam.onnx")
    assert list(tmp_path.iterdir()) == []


def test_quantize_onnx_keeps_an_existing_file_unless_overwrite_is_true(exported, tmp_path):
    mine = tmp_path / "sam_int8.onnx"
    mine.write_bytes(b"my own file")
    with pytest.raises(SamInputError, match=r"^path: expected a file name not in use, got '.*sam_int8\.onnx', but "
                                            r"sam_int8\.onnx already exists there\. Nothing was saved: choose another "
                                            r"name, or call quantize_onnx\(source, path, overwrite=True\)"):
        quantize_onnx(exported, mine)
    assert mine.read_bytes() == b"my own file"
    with pytest.raises(SamInputError, match=r"^overwrite: expected True or False, got str 'no'\.$"):
        quantize_onnx(exported, mine, overwrite="no")
    assert mine.read_bytes() == b"my own file"
    size = exported.stat().st_size
    with pytest.raises(SamInputError, match=r"^path: expected another file than source, got '.*', which is source"):
        quantize_onnx(exported, exported, overwrite=True)
    assert exported.stat().st_size == size
    assert quantize_onnx(exported, mine, overwrite=True) == mine
    ort.InferenceSession(str(mine), providers=["CPUExecutionProvider"])


def test_quantize_onnx_wants_an_onnx_file_as_its_source(tmp_path):
    import torch

    checkpoint, folder, empty = tmp_path / "mine.pth", tmp_path / "folder", tmp_path / "empty.onnx"
    torch.save({"weight": torch.zeros(2)}, checkpoint)
    folder.mkdir()
    empty.write_bytes(b"")
    expected = r"^source: expected an ONNX file written by export_onnx, got "
    cases = [
        (tmp_path / "missing.onnx", r"'.*missing\.onnx', which does not exist\.$"),
        (folder, r"'.*folder', which is a folder\.$"),
        (checkpoint, r"'.*mine\.pth', which onnx cannot read as a model \(.*\)\.$"),
        (empty, r"'.*empty\.onnx', which holds no ONNX graph\.$"),
        (None, r"NoneType None\.$"),
    ]
    for source, what in cases:
        with pytest.raises(SamInputError, match=expected + what):
            quantize_onnx(source, tmp_path / "int8.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.onnx", "folder", "mine.pth"]
