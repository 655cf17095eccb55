"""`pip install .` must give a working package: the wheel carries every subpackage, the bundled small model
and the sample images, and the installed copy segments a photo with nothing from the source tree.

The wheel is built offline from a copy of the repository (so no build/ folder is left in, or reused from,
the working tree), then installed without dependencies into a throwaway folder that a subprocess puts first
on its path; the dependencies themselves come from the environment running the tests.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SUBPACKAGES = {"modeling", "utils", "fast", "interactive", "training"}
# What segmenting needs, and nothing of the course (JupyterLab, widgets) or the tests.
RUNTIME = {"torch", "torchvision", "numpy", "pillow", "tqdm", "safetensors", "pooch", "scipy"}
# Installed by the course and dev extras only: the installed wheel must segment without importing any of them.
NOT_RUNTIME = ["jupyterlab", "matplotlib", "ipywidgets", "ipympl", "nbval", "pytest", "segment_anything",
               "transformers", "pycocotools", "playwright"]
# Left out of the copy that the wheel is built from: version control, environments and build leftovers.
NOT_SOURCE = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ipynb_checkpoints",
              "outputs", "runs", "artifacts"}

pytestmark = pytest.mark.timeout(300)


def _pip(*args: str, cwd: Path) -> None:
    # --no-index: everything needed is local, so the build and the install work offline.
    command = [sys.executable, "-m", "pip", *args, "--no-index", "--disable-pip-version-check", "-q"]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def _source_version(package: Path) -> str:
    tree = ast.parse((package / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("sam_from_scratch/__init__.py assigns no __version__")


def _dist_info(wheel_files: set[str]) -> str:
    (dist_info,) = {name.split("/")[0] for name in wheel_files if name.split("/")[0].endswith(".dist-info")}
    return dist_info


def _package_files(package: Path, under: str = "") -> set[str]:
    """Every file under `package`/`under`, named as in the wheel, less caches and dotfiles."""
    return {
        path.relative_to(package.parent).as_posix()
        for path in (package / under).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".")
    }


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The package folder of the copy that the wheel is built from (the working tree may change meanwhile)."""
    source = tmp_path_factory.mktemp("packaging") / "source"
    shutil.copytree(
        ROOT, source,
        ignore=lambda _, names: [n for n in names if n in NOT_SOURCE or n.endswith((".egg-info", ".whl"))],
    )
    return source / "sam_from_scratch"


@pytest.fixture(scope="module")
def wheel(package) -> Path:
    wheelhouse = package.parent.parent / "wheelhouse"
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(wheelhouse), cwd=package.parent)
    (built,) = wheelhouse.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_files(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("installed") / "site"
    _pip("install", "--no-deps", "--target", str(site), str(wheel), cwd=wheel.parent)
    return site


# Makes the packages of NOT_RUNTIME unimportable, as after a plain `pip install .`.
WITHOUT_EXTRAS = f"""
import sys
class WithoutExtras:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_RUNTIME!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not a runtime dependency)", name=name)
sys.meta_path.insert(0, WithoutExtras())
"""


def _run_outside(site: Path, script: str) -> subprocess.CompletedProcess:
    """Run `script` with the installed copy first on the path and without the extras, outside the repository."""
    workdir = site.parent / "work"
    workdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SAM_FROM_SCRATCH_DATA"}}
    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1")
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS + script], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=240)


def test_the_wheel_is_named_with_the_version_defined_in_the_package(package, wheel):
    assert wheel.name.startswith(f"sam_from_scratch-{_source_version(package)}-"), wheel.name


def test_the_wheel_holds_every_subpackage_and_module(package, wheel_files):
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    assert SUBPACKAGES <= subpackages
    modules = {m for m in _package_files(package) if m.endswith(".py")}
    assert modules - wheel_files == set()
    # Only the package and its metadata: no tests, notebooks or benchmarks.
    assert {name.split("/")[0] for name in wheel_files} == {"sam_from_scratch", _dist_info(wheel_files)}


def test_the_wheel_holds_the_bundled_model_and_the_sample_images(package, wheel_files):
    data = _package_files(package, "data")
    assert data - wheel_files == set()
    for name in ["tiny/sam_tiny.pt", "tiny/card.json", "tiny/EXPERIMENTS.md", "tiny/loss_log.csv",
                 "images/LICENSES.md", "images/coffee.png", "images/rocket.jpg"]:
        assert f"sam_from_scratch/data/{name}" in wheel_files, name


def test_installing_the_wheel_brings_only_what_segmenting_needs(wheel):
    with zipfile.ZipFile(wheel) as archive:
        dist_info = _dist_info(set(archive.namelist()))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    fields = [line.split(":", 1) for line in metadata.splitlines() if ":" in line]
    requires = [Requirement(value) for key, value in fields if key == "Requires-Dist"]
    assert {r.name.lower() for r in requires if r.marker is None} == RUNTIME
    extras = {value.strip() for key, value in fields if key == "Provides-Extra"}
    assert {"course", "dev"} <= extras
    assert "sam-from-scratch = sam_from_scratch.cli:main" in entry_points


def test_the_installed_wheel_loads_the_bundled_model_and_the_samples(package, installed):
    script = (
        "import json, sam_from_scratch\n"
        "from sam_from_scratch import from_pretrained\n"
        "from sam_from_scratch.samples import list_sample_images, sample_image_path\n"
        "model = from_pretrained('tiny')\n"
        "print(json.dumps({'file': sam_from_scratch.__file__, 'model': type(model).__name__,\n"
        "    'parameters': sum(p.numel() for p in model.parameters()),\n"
        "    'samples': list_sample_images(), 'coffee': str(sample_image_path('coffee'))}))\n"
    )
    result = _run_outside(installed, script)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["file"]).resolve().is_relative_to(installed.resolve()), found["file"]
    assert found["model"] == "Sam" and found["parameters"] > 0
    photos = [p for p in (package / "data" / "images").iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"}]
    assert found["samples"] == sorted(p.stem for p in photos)
    assert Path(found["coffee"]).resolve().is_relative_to(installed.resolve()), found["coffee"]


def test_the_installed_wheel_segments_a_sample_from_the_command_line(installed):
    image = installed / "sam_from_scratch" / "data" / "images" / "coffee.png"
    out = installed.parent / "m.png"
    argv = ["sam_from_scratch", "segment", str(image), "--point", "50,50", "--out", str(out)]
    # What `python -m sam_from_scratch segment ...` runs, after the extras are blocked.
    script = (f"import runpy\nsys.argv = {argv!r}\n"
              "runpy.run_module('sam_from_scratch', run_name='__main__', alter_sys=True)\n")
    result = _run_outside(installed, script)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    with Image.open(out) as mask, Image.open(image) as photo:
        assert mask.format == "PNG"
        assert mask.size == photo.size
