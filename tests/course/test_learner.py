"""The learner's SAM: the classes of notebooks 02-09, collected from their `# save` cells into learner.py.

- learner.py is exactly what `python -m sam_from_scratch.course` makes from the notebooks now, so editing a
  saved cell without regenerating fails here;
- every class of learner.py is written in exactly one notebook cell, a `# save` cell, and nowhere else;
- the learner's model loads official-format checkpoints strictly (random vit_b weights in Meta's format, the
  bundled small model) and computes what the official `segment_anything` computes, stage by stage;
- the learner's minimal predictor of notebook 09 gives the official SamPredictor's masks and scores.
"""

from __future__ import annotations

import ast
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import make_scene, official_sam_for_config

from sam_from_scratch import course, learner
from sam_from_scratch.config import CONFIGS, TINY_CHECKPOINT
from sam_from_scratch.errors import SamInputError

ALL_NOTEBOOKS = sorted(course.NOTEBOOK_DIR.glob("*.ipynb"))
COURSE_CLASSES = [
    "PositionEmbeddingRandom", "LayerNorm2d", "PromptEncoder", "PatchEmbed", "Attention", "MLPBlock", "Block",
    "ImageEncoderViT", "DecoderAttention", "TwoWayAttentionBlock", "TwoWayTransformer", "MLP", "MaskDecoder",
    "Sam", "SamPredictor",
]


def code_sources(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def defined_classes(source: str) -> list[str]:
    """Names of the classes a cell defines at its top level (IPython magics and shell lines left out)."""
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    return [node.name for node in ast.parse(python).body if isinstance(node, ast.ClassDef)]


# ---- the generated module is in sync with the notebooks -------------------------------------------------


def test_learner_py_is_what_the_notebooks_generate():
    expected = course.learner_source()
    assert course.LEARNER_PATH.read_text(encoding="utf-8") == expected, (
        "sam_from_scratch/learner.py differs from the notebooks' `# save` cells: run python -m sam_from_scratch.course"
    )


def test_editing_a_saved_cell_changes_the_generated_module(tmp_path):
    for path in course.notebook_paths():
        shutil.copy(path, tmp_path / path.name)
    target = tmp_path / "07_mask_decoder.ipynb"
    nb = json.loads(target.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("# save\n"))
    cell["source"] = "".join(cell["source"]) + "\n# an edit\n"
    target.write_text(json.dumps(nb), encoding="utf-8")
    assert course.learner_source(tmp_path) != course.learner_source()
    assert "# an edit" in course.learner_source(tmp_path)


def test_only_cells_whose_first_line_is_exactly_save_are_collected(tmp_path):
    sources = ["# save\ndef a():\n    pass", "# saved\ndef b():\n    pass", "x = 1\n# save\ndef c():\n    pass",
               "#save\ndef d():\n    pass", "# save  \ndef e():\n    pass"]
    nb = {"cells": [{"cell_type": "code", "source": s} for s in sources] + [{"cell_type": "markdown", "source": "# save"}]}
    (tmp_path / "05_x.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    assert course.save_cells(tmp_path / "05_x.ipynb") == ["def a():\n    pass", "def e():\n    pass"]


def test_the_generator_names_a_missing_notebook_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="notebook_dir"):
        course.learner_source(tmp_path / "nowhere")


def test_the_check_command_fails_when_learner_py_is_stale(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "learner.py"
    stale.write_text("# stale\n", encoding="utf-8")
    monkeypatch.setattr(course, "LEARNER_PATH", stale)
    assert course.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_an_empty_notebook_folder_leaves_learner_py_as_it_is(tmp_path, monkeypatch, capsys):
    learner_copy = tmp_path / "learner.py"
    shutil.copy(course.LEARNER_PATH, learner_copy)
    kept = learner_copy.read_text(encoding="utf-8")
    empty = tmp_path / "notebooks"
    empty.mkdir()
    monkeypatch.setattr(course, "NOTEBOOK_DIR", empty)
    monkeypatch.setattr(course, "LEARNER_PATH", learner_copy)
    for argv in ([], ["--check"]):
        assert course.main(argv) == 2  # it wrote a header-only learner.py over the whole model
        err = capsys.readouterr().err
        assert err.startswith(f"error: notebook_dir: expected the course's notebooks (0[2-9]_*.ipynb) with `# save` "
                              f"cells, got {empty}, with 0 such notebook(s) and no `# save` cell; ")
        assert err.count("\n") == 1
    assert learner_copy.read_text(encoding="utf-8") == kept


def test_without_a_notebook_folder_the_command_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(course, "NOTEBOOK_DIR", tmp_path / "notebooks")  # an installed wheel has none
    monkeypatch.setattr(course, "LEARNER_PATH", tmp_path / "learner.py")
    assert course.main(["--check"]) == 2  # one line, no traceback
    assert capsys.readouterr().err == (
        f"error: notebook_dir: expected the course's notebooks/ folder, but {tmp_path / 'notebooks'} does not exist "
        "(learner.py can only be regenerated from a checkout of the repository); nothing was checked.\n"
    )
    assert course.main([]) == 2 and not (tmp_path / "learner.py").exists()


def copy_of_the_notebooks(folder):
    for path in course.notebook_paths():
        shutil.copy(path, folder / path.name)
    return folder


def edit_a_save_cell(path, edit):
    """Apply edit(source) to the first `# save` cell of the notebook at path."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith("# save\n"))
    cell["source"] = edit("".join(cell["source"]))
    path.write_text(json.dumps(nb), encoding="utf-8")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("# save\n", "# save\n%%time\n", 1),
     r"^notebooks/05_image_encoder\.ipynb, the # save cell starting '%%time': expected Python, got a line Python "
     r"cannot read, line 1 of the cell: '%%time' \(invalid syntax\)\. IPython magics \(%, %%, !\) are not Python"),
    (lambda s: s + "\nprint(window_partition)\n",
     r"^notebooks/05_image_encoder\.ipynb, the # save cell starting .*: expected definitions only \(classes, "
     r"functions, imports, constants\), got 'print\(window_partition\)' \(line \d+ of the cell\), which would run "
     r"whenever learner\.py is imported\. Move it to a cell without the # save line\.$"),
    (lambda s: s + "\n\ndef norm_layer(dim):\n    return partial(nn.LayerNorm, eps=1e-6)(dim)\n",
     r"^notebooks/05_image_encoder\.ipynb, the # save cell starting .*: expected names that learner\.py defines, got "
     r"'partial', which no # save cell defines or imports \(learner\.py's header imports .*\)\. Import it in a "
     r"saved cell, e\.g\. this one\.$"),
    (lambda s: s + "\n\nclass LayerNorm2d:\n    pass\n",
     r"^notebooks/05_image_encoder\.ipynb, the # save cell starting .*: expected a name of its own, got "
     r"'LayerNorm2d', which notebooks/04_dense_prompts\.ipynb, the # save cell starting .* defines too"),
])
def test_a_save_cell_that_cannot_go_into_learner_py_is_named_and_nothing_is_written(tmp_path, monkeypatch, capsys,
                                                                                    edit, message):
    notebooks = copy_of_the_notebooks(tmp_path)
    edit_a_save_cell(notebooks / "05_image_encoder.ipynb", edit)
    with pytest.raises(SamInputError, match=message):
        course.learner_source(notebooks)
    learner_copy = tmp_path / "learner.py"
    learner_copy.write_text("# the learner's file as it was\n", encoding="utf-8")
    monkeypatch.setattr(course, "NOTEBOOK_DIR", notebooks)
    monkeypatch.setattr(course, "LEARNER_PATH", learner_copy)
    assert course.main([]) == 2 and "notebooks/05_image_encoder.ipynb" in capsys.readouterr().err
    assert learner_copy.read_text(encoding="utf-8") == "# the learner's file as it was\n"


def test_a_copy_of_a_chapter_beside_it_is_refused_with_both_names(tmp_path):
    notebooks = copy_of_the_notebooks(tmp_path)
    shutil.copy(notebooks / "07_mask_decoder.ipynb", notebooks / "07_mask_decoder-Copy1.ipynb")
    with pytest.raises(SamInputError, match=r"expected one notebook for chapter 07, got 2 in .*: "
                                            r"07_mask_decoder-Copy1\.ipynb, 07_mask_decoder\.ipynb\."):
        course.learner_source(notebooks)


def test_a_notebook_that_is_not_json_is_named(tmp_path):
    notebooks = copy_of_the_notebooks(tmp_path)
    (notebooks / "05_image_encoder.ipynb").write_text("{ half a notebook", encoding="utf-8")
    with pytest.raises(SamInputError, match=r"^notebook_dir: expected notebooks, got .*05_image_encoder\.ipynb, which "
                                            r"is not one that can be read \(JSONDecodeError"):
        course.learner_source(notebooks)


def test_the_notebooks_rebuild_learner_py_when_a_save_cell_changed(tmp_path, monkeypatch):
    import sys

    (tmp_path / "notebooks").mkdir()
    notebooks = copy_of_the_notebooks(tmp_path / "notebooks")
    learner_copy = tmp_path / "learner.py"
    monkeypatch.delitem(sys.modules, "sam_from_scratch.learner")  # not reloaded: this process's classes stay
    shutil.copy(course.LEARNER_PATH, learner_copy)
    monkeypatch.setattr(course, "NOTEBOOK_DIR", notebooks)
    monkeypatch.setattr(course, "LEARNER_PATH", learner_copy)
    assert course.refresh_learner() == "learner.py is up to date with the saved notebooks' # save cells"
    edit_a_save_cell(notebooks / "07_mask_decoder.ipynb", lambda s: s + "\n# my edit\n")
    rebuilt = "learner.py rebuilt from the saved notebooks' # save cells"
    assert course.refresh_learner() == rebuilt
    assert "# my edit" in learner_copy.read_text(encoding="utf-8")
    monkeypatch.setattr(course, "NOTEBOOK_DIR", tmp_path / "nowhere")  # an installed copy of the package
    assert course.refresh_learner().startswith("note: this sam_from_scratch is an installed copy")


# ---- each class is written once -------------------------------------------------------------------------


def test_the_learner_module_holds_the_course_classes():
    missing = [name for name in COURSE_CLASSES if not isinstance(getattr(learner, name, None), type)]
    assert not missing, f"learner.py lacks {missing}"


def test_every_learner_class_is_written_in_exactly_one_cell_and_it_is_a_save_cell():
    tree = ast.parse(course.LEARNER_PATH.read_text(encoding="utf-8"))
    learner_classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert len(learner_classes) == len(set(learner_classes)), "a class is defined twice in learner.py"
    where = {name: [] for name in learner_classes}
    for path in ALL_NOTEBOOKS:
        for source in code_sources(path):
            for name in defined_classes(source):
                if name in where:
                    where[name].append((path.name, source.startswith(course.SAVE_MARKER + "\n")))
    problems = {name: cells for name, cells in where.items() if len(cells) != 1 or not cells[0][1]}
    assert not problems, f"classes written more than once, or outside a `# save` cell: {problems}"


def test_the_class_rule_can_fail():
    assert defined_classes("%matplotlib inline\nclass A:\n    pass\nx = 1") == ["A"]
    assert defined_classes("def f():\n    class Inner:\n        pass") == []


# ---- loading official-format checkpoints ------------------------------------------------------------------


@pytest.fixture(scope="module")
def learner_vit_b(random_vit_b_checkpoint):
    model = learner.build_sam(CONFIGS["vit_b"])
    model.load_state_dict(torch.load(random_vit_b_checkpoint, map_location="cpu", weights_only=True))  # strict
    return model.eval()


@pytest.fixture(scope="module")
def tiny_pair():
    """The bundled small model's file loaded strictly into the learner's Sam and into the official classes."""
    state_dict = torch.load(TINY_CHECKPOINT, map_location="cpu", weights_only=True)
    ours = learner.build_sam(CONFIGS["tiny"])
    ours.load_state_dict(state_dict)
    official = official_sam_for_config(CONFIGS["tiny"])
    official.load_state_dict(state_dict)
    return ours.eval(), official.eval()


def test_the_learner_vit_b_takes_an_official_checkpoint_key_for_key(learner_vit_b, official_vit_b):
    ours, theirs = learner_vit_b.state_dict(), official_vit_b.state_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key


def test_strict_loading_refuses_a_checkpoint_of_another_size():
    with torch.device("meta"):
        model = learner.build_sam(CONFIGS["vit_b"])
    with pytest.raises(RuntimeError, match="size mismatch"):
        model.load_state_dict(torch.load(TINY_CHECKPOINT, weights_only=True), assign=True)


def prompts(image_size: int, seed: int = 0):
    """One click, a box and a mask prompt in the model's input frame."""
    g = torch.Generator().manual_seed(seed)
    grid = 4 * (image_size // (16 if image_size == 1024 else CONFIGS["tiny"].patch_size))
    points = (torch.rand(1, 2, 2, generator=g) * image_size, torch.tensor([[1, 0]]))
    boxes = torch.tensor([[0.1, 0.2, 0.7, 0.9]]) * image_size
    masks = torch.randn(1, 1, grid, grid, generator=g)
    return points, boxes, masks


def assert_same_stages(ours, official, embedding, atol=1e-4):
    """Prompt embeddings (sparse, dense), masks and IoU of the learner's model equal the official model's."""
    size = official.image_encoder.img_size
    points, boxes, masks = prompts(size)
    with torch.no_grad():
        torch.testing.assert_close(ours.prompt_encoder.get_dense_pe(), official.prompt_encoder.get_dense_pe(),
                                   atol=atol, rtol=1e-4)
        for args in [(points, None, None), (points, boxes, None), (None, boxes, masks), (None, None, masks)]:
            torch.testing.assert_close(ours.prompt_encoder(*args), official.prompt_encoder(*args), atol=atol, rtol=1e-4)
        sparse, dense = official.prompt_encoder(points, None, None)
        pe = official.prompt_encoder.get_dense_pe()
        for multimask in (True, False):
            torch.testing.assert_close(ours.mask_decoder(embedding, pe, sparse, dense, multimask),
                                       official.mask_decoder(embedding, pe, sparse, dense, multimask),
                                       atol=atol, rtol=1e-4)


def test_the_learner_vit_b_equals_the_official_prompt_encoder_and_mask_decoder(learner_vit_b, official_vit_b):
    embedding = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(1))
    assert_same_stages(learner_vit_b, official_vit_b, embedding)


def test_the_learner_vit_b_image_embedding_equals_the_official(learner_vit_b, official_vit_b):
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(learner_vit_b.image_encoder(x), official_vit_b.image_encoder(x),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("weights", ["bundled small model", "random"])
def test_the_learner_small_model_equals_the_official_stage_by_stage(weights, tiny_pair, official_tiny_random):
    ours, official = tiny_pair
    if weights == "random":
        official = official_tiny_random
        ours = learner.build_sam(CONFIGS["tiny"]).eval()
        ours.load_state_dict(official.state_dict())
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(3)) * 50 + 100
    with torch.no_grad():
        torch.testing.assert_close(ours.preprocess(x[0]), official.preprocess(x[0]))
        embedding = official.image_encoder(official.preprocess(x[0])[None])
        torch.testing.assert_close(ours.image_encoder(ours.preprocess(x[0])[None]), embedding, atol=1e-4, rtol=1e-4)
    assert_same_stages(ours, official, embedding)


def test_the_learner_sam_forward_equals_the_official(tiny_pair):
    ours, official = tiny_pair
    image = torch.as_tensor(make_scene(96, 72, seed=5)).permute(2, 0, 1).float()
    record = {"image": image, "original_size": (120, 90), "point_coords": torch.tensor([[[30.0, 40.0]]]),
              "point_labels": torch.ones(1, 1)}
    with torch.no_grad():
        (mine,), (theirs,) = ours([record], multimask_output=True), official([record], multimask_output=True)
    torch.testing.assert_close(mine["low_res_logits"], theirs["low_res_logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mine["iou_predictions"], theirs["iou_predictions"], atol=1e-4, rtol=1e-4)
    assert (mine["masks"] != theirs["masks"]).float().mean() < 1e-3


# ---- the minimal predictor of notebook 09 ---------------------------------------------------------------


@pytest.mark.parametrize("shape", [(333, 517), (517, 333)])
def test_the_learner_predictor_equals_the_official_predictor(shape, tiny_pair):
    from segment_anything import SamPredictor as OfficialPredictor

    ours, official = tiny_pair
    image = make_scene(*shape, seed=6)
    mine, theirs = learner.SamPredictor(ours), OfficialPredictor(official)
    mine.set_image(image)
    theirs.set_image(image)
    h, w = shape
    cases = [
        dict(point_coords=np.array([[0.4 * w, 0.5 * h]]), point_labels=np.array([1]), multimask_output=True),
        dict(point_coords=np.array([[0.4 * w, 0.5 * h], [0.7 * w, 0.2 * h]]), point_labels=np.array([1, 0]),
             multimask_output=False),
        dict(box=np.array([0.1 * w, 0.2 * h, 0.6 * w, 0.8 * h]), multimask_output=False),
    ]
    for case in cases:
        masks, scores, logits = mine.predict(**case)
        ref_masks, ref_scores, ref_logits = theirs.predict(**case)
        assert masks.shape == ref_masks.shape == (scores.shape[0], h, w)
        assert (masks != ref_masks).mean() < 1e-3
        np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-3)


def test_the_learner_predictor_asks_for_an_image_first(tiny_pair):
    with pytest.raises(RuntimeError, match="set_image"):
        learner.SamPredictor(tiny_pair[0]).predict(point_coords=np.array([[1.0, 2.0]]), point_labels=np.array([1]))
