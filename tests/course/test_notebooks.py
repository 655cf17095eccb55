"""The notebooks are saved the way the course promises (see notebooks/README.md).

nbval (run by the test command with `--nbval`) re-executes every notebook and compares outputs; these tests
check what nbval does not: that the *saved* file was executed top to bottom without errors, and that every
notebook has the parts a learner relies on (title, set-up cell, check cell, a picture, short cells, a recap).
Each rule is a small function returning a list of problems, tested on the real notebooks and on a broken
example so that every rule can fail.

The numbered chapters (00_ .. 12_) and the appendices (A1_, ...) follow the same rules; an appendix's title
starts with its label ("# A1") the way a chapter's starts with its number. Only the list of chapters is fixed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
CHAPTERS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
APPENDICES = sorted(NOTEBOOK_DIR.glob("A[0-9]_*.ipynb"))
NOTEBOOKS = CHAPTERS + APPENDICES  # the course's order: the chapters, then the appendices
COURSE = [f"{n:02d}" for n in range(13)]  # the numbered notebooks 00 .. 12
RECAP_BULLETS = 3
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def has_marker(cell, marker=IGNORE_MARKER) -> bool:
    # nbval only honours the marker as a whole comment line.
    return any(line.strip() == marker for line in cell.source.splitlines())


# ---- the rules -----------------------------------------------------------------------------------------


def saved_errors(nb) -> list[str]:
    return [
        f"code cell {i} was saved with an error output ({out.get('ename')})"
        for i, cell in enumerate(code_cells(nb))
        for out in cell.outputs
        if out.output_type == "error"
    ]


def execution_order_problems(nb) -> list[str]:
    problems = []
    for i, cell in enumerate(code_cells(nb), start=1):
        if not cell.source.strip():
            problems.append(f"code cell {i} is empty")
        elif cell.execution_count != i:
            problems.append(f"code cell {i} has execution count {cell.execution_count}, expected {i}")
        for out in cell.outputs:
            if out.output_type == "execute_result" and out.get("execution_count") != cell.execution_count:
                problems.append(f"code cell {i}: its result has execution count {out.get('execution_count')}")
    return problems


def title_problems(nb, number: str) -> list[str]:
    first = nb.cells[0] if nb.cells else None
    if first is None or first.cell_type != "markdown":
        return ["the first cell must be a markdown title"]
    problems = []
    if not re.match(rf"#\s+{number}\b", first.source.strip()):
        problems.append(f"the title must start with '# {number}' (the start of the notebook's file name)")
    if "you will build" not in first.source.lower():
        problems.append("the title cell must say what the learner will build ('You will build: ...')")
    return problems


def setup_cell_problems(nb) -> list[str]:
    cells = code_cells(nb)
    if not cells:
        return ["no code cells"]
    setup = cells[0]
    return [
        f"the first code cell (set-up) must contain {needle!r}"
        for needle in ("manual_seed", "auto_device", "__version__")
        if needle not in setup.source
    ] + ([] if has_marker(setup) else [f"the set-up cell must print versions under '{IGNORE_MARKER}'"])


def check_cell_problems(nb) -> list[str]:
    headings = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "markdown" and any(line.startswith("## Check") for line in c.source.splitlines())
    ]
    if not headings:
        return ["no '## Check' markdown heading"]
    after = [c for c in nb.cells[headings[-1] + 1 :] if c.cell_type == "code"]
    if not after or "assert_close" not in after[0].source:
        return ["the code cell after '## Check' must compare with torch.testing.assert_close"]
    if has_marker(after[0]):
        return ["the check cell's output must be compared (no NBVAL_IGNORE_OUTPUT)"]
    return []


def picture_problems(nb) -> list[str]:
    pictures = [o for c in code_cells(nb) for o in c.outputs if "image/png" in o.get("data", {})]
    return [] if pictures else ["no picture (image/png output)"]


def cell_length_problems(nb, short=15, longest=30, share=0.75) -> list[str]:
    lengths = [len(c.source.strip().splitlines()) for c in code_cells(nb)]
    problems = [f"a code cell has {n} lines (at most {longest})" for n in lengths if n > longest]
    if lengths and sum(n < short for n in lengths) < share * len(lengths):
        problems.append(f"fewer than {share:.0%} of code cells are under {short} lines")
    return problems


def hidden_solution_problems(nb) -> list[str]:
    return [
        f"code cell {i} is tagged 'solution' but its source is not hidden (metadata.jupyter.source_hidden)"
        for i, c in enumerate(code_cells(nb), start=1)
        if "solution" in c.metadata.get("tags", []) and not c.metadata.get("jupyter", {}).get("source_hidden")
    ]


def ignore_output_problems(nb, share=0.5) -> list[str]:
    cells = code_cells(nb)
    ignored = sum(has_marker(c) for c in cells)
    if cells and ignored > max(2, share * len(cells)):
        return [f"{ignored} of {len(cells)} code cells ignore their output; keep NBVAL_IGNORE_OUTPUT to what varies"]
    return []


def recap_problems(nb, bullets=RECAP_BULLETS) -> list[str]:
    last = nb.cells[-1] if nb.cells else None
    if last is None or last.cell_type != "markdown" or not last.source.startswith("## Recap"):
        return ["the last cell must be a markdown cell starting with '## Recap'"]
    found = sum(line.startswith("- ") for line in last.source.splitlines())
    return [] if found == bullets else [f"the recap has {found} '- ' bullets, expected {bullets}"]


def kernel_problems(nb) -> list[str]:
    name = nb.metadata.get("kernelspec", {}).get("name")
    return [] if name == "python3" else [f"kernelspec name is {name!r}, expected 'python3'"]


def all_problems(nb, number: str) -> list[str]:
    return (
        saved_errors(nb)
        + execution_order_problems(nb)
        + title_problems(nb, number)
        + setup_cell_problems(nb)
        + check_cell_problems(nb)
        + picture_problems(nb)
        + cell_length_problems(nb)
        + hidden_solution_problems(nb)
        + ignore_output_problems(nb)
        + recap_problems(nb)
        + kernel_problems(nb)
    )


# ---- the real notebooks ---------------------------------------------------------------------------------


def label(path: Path) -> str:
    """What the notebook's title starts with: '07' for 07_mask_decoder.ipynb, 'A1' for A1_sam_in_onnx.ipynb."""
    return path.name.split("_")[0]


def test_every_numbered_notebook_of_the_course_exists():
    present = {label(p) for p in CHAPTERS}
    missing = [n for n in COURSE if n not in present]
    assert not missing, f"notebooks missing from notebooks/: {missing}"


def test_the_appendices_are_found():
    assert "A1_sam_in_onnx.ipynb" in [p.name for p in APPENDICES]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make to read the Makefile")
def test_make_notebooks_runs_every_notebook_in_the_course_order():
    shown = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "show-notebooks: ; @echo $(NOTEBOOKS)", "show-notebooks"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )
    assert shown.stdout.split() == [str(p.relative_to(REPO)) for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_valid_nbformat(path):
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_follows_the_course_conventions(path):
    problems = all_problems(nbformat.read(path, as_version=4), label(path))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# ---- every rule can fail ---------------------------------------------------------------------------------


def good_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    setup = nbformat.v4.new_code_cell(
        f"{IGNORE_MARKER}\nimport torch, sam_from_scratch\ntorch.manual_seed(0)\n"
        "device = sam_from_scratch.auto_device()\nprint(sam_from_scratch.__version__)",
        execution_count=1,
    )
    plot = nbformat.v4.new_code_cell("plt.show()", execution_count=2)
    plot.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]
    check = nbformat.v4.new_code_cell("torch.testing.assert_close(a, b)\nprint('check passed')", execution_count=3)
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 07 · A title\n\n**You will build:** a thing."),
        setup,
        plot,
        nbformat.v4.new_markdown_cell("## Check"),
        check,
        nbformat.v4.new_markdown_cell("## Recap\n\n- One thing.\n- Another thing.\n- A third thing."),
    ]
    return nb


def test_a_notebook_that_follows_the_conventions_has_no_problems():
    assert all_problems(good_notebook(), "07") == []


def test_a_saved_error_is_reported():
    nb = good_notebook()
    nb.cells[2].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[]))
    assert saved_errors(nb)


def test_out_of_order_or_missing_execution_counts_are_reported():
    nb = good_notebook()
    nb.cells[2].execution_count, nb.cells[4].execution_count = 3, 2
    assert execution_order_problems(nb)
    nb = good_notebook()
    nb.cells[4].execution_count = None
    assert execution_order_problems(nb)


def test_an_empty_code_cell_is_reported():
    nb = good_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("", execution_count=None))
    assert execution_order_problems(nb)


def test_a_missing_or_misshapen_recap_is_reported():
    nb = good_notebook()
    del nb.cells[-1]
    assert recap_problems(nb) == ["the last cell must be a markdown cell starting with '## Recap'"]
    assert recap_problems(nbformat.v4.new_notebook())  # no cells at all
    nb = good_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("## Further reading"))  # the recap is not the last cell
    assert recap_problems(nb)
    nb = good_notebook()
    nb.cells[-1].source += "\n- A fourth thing."
    assert recap_problems(nb) == ["the recap has 4 '- ' bullets, expected 3"]
    nb.cells[-1].source = "## Recap\n\n* One.\n* Two.\n* Three."
    assert recap_problems(nb) == ["the recap has 0 '- ' bullets, expected 3"]


def test_an_appendix_title_starts_with_its_label():
    nb = good_notebook()
    nb.cells[0].source = "# A1 · An appendix\n\n**You will build:** a thing."
    assert title_problems(nb, "A1") == []
    assert title_problems(nb, "A2")


def test_a_missing_title_or_build_sentence_is_reported():
    nb = good_notebook()
    assert title_problems(nb, "08")  # wrong number
    nb.cells[0].source = "# 07 · A title"
    assert title_problems(nb, "07")


def test_a_setup_cell_without_seed_or_ignored_versions_is_reported():
    nb = good_notebook()
    nb.cells[1].source = nb.cells[1].source.replace("torch.manual_seed(0)\n", "")
    assert setup_cell_problems(nb)
    nb = good_notebook()
    nb.cells[1].source = nb.cells[1].source.replace(IGNORE_MARKER, "# NBVAL_IGNORE_OUTPUT: versions")
    assert setup_cell_problems(nb)


def test_a_missing_check_cell_is_reported():
    nb = good_notebook()
    nb.cells[4].source = "print('looks fine')"
    assert check_cell_problems(nb)
    del nb.cells[3:]
    assert check_cell_problems(nb)


def test_a_notebook_without_pictures_is_reported():
    nb = good_notebook()
    nb.cells[2].outputs = []
    assert picture_problems(nb)


def test_long_cells_are_reported():
    nb = good_notebook()
    nb.cells[2].source = "\n".join(f"x{i} = {i}" for i in range(31))
    assert cell_length_problems(nb)


def test_a_visible_solution_is_reported():
    nb = good_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("# Solution\nprint(1)", execution_count=4, metadata={"tags": ["solution"]}))
    assert hidden_solution_problems(nb)
    nb.cells[-1].metadata["jupyter"] = {"source_hidden": True}
    assert hidden_solution_problems(nb) == []


def test_ignoring_most_outputs_is_reported():
    nb = good_notebook()
    for cell in code_cells(nb)[1:]:
        cell.source = IGNORE_MARKER + "\n" + cell.source
    nb.cells.append(nbformat.v4.new_code_cell(IGNORE_MARKER + "\nprint(2)", execution_count=4))
    assert ignore_output_problems(nb)


# ---- the sanitize file masks what varies, and nothing else ------------------------------------------------

SANITIZE_FILE = NOTEBOOK_DIR / "nbval_sanitize.cfg"


def sanitize(text: str) -> str:
    from nbval.plugin import get_sanitize_patterns

    for regex, replacement in get_sanitize_patterns(SANITIZE_FILE.read_text()):
        text = re.sub(regex, replacement, text)
    return text


@pytest.mark.parametrize(
    "first, second",
    [
        ("set_image took 4.96 s", "set_image took 0.31 s"),
        ("predict took 2137.7 ms", "predict took 8.0 ms"),
        ("3.4 it/s", "12.9 it/s"),
        ("peak memory 310.5 MB", "peak memory 298.0 MB"),
        ("<matplotlib.image.AxesImage at 0x7f3a12345678>", "<matplotlib.image.AxesImage at 0x7fcc0000aa10>"),
        ("max diff 3.1e-07", "max diff 0.0e+00"),
        ("<img src='data:image/png;base64,iVBORw0KGgo+/AAA='>", "<img src='data:image/png;base64,iVBORxyz='>"),
    ],
)
def test_the_sanitize_file_masks_what_legitimately_varies(first, second):
    assert sanitize(first) == sanitize(second)


@pytest.mark.parametrize(
    "first, second",
    [
        ("3 masks", "4 masks"),
        ("predicted IoU: 0.91", "predicted IoU: 0.19"),
        ("max diff 1.2e-03", "max diff 3.1e-07"),  # a real difference stays visible
        ("(1, 256, 64, 64)", "(1, 256, 32, 32)"),
        ("check passed", "check failed"),
    ],
)
def test_the_sanitize_file_keeps_what_must_not_vary(first, second):
    assert sanitize(first) != sanitize(second)
