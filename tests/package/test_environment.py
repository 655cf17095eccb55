"""environment.yml (the conda route) must name the same packages, with the same bounds, as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = set(project["dependencies"])
    requirements |= set(project["optional-dependencies"]["dev"])
    return {r.replace(" ", "") for r in requirements}


def environment_requirements() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    names = set()
    for line in lines[start + 1 :]:
        match = re.match(r"^\s+- (\S.*)$", line)
        if match and not match.group(1).startswith("-e"):
            names.add(match.group(1).split("#")[0].strip().replace(" ", ""))
    return names


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    assert environment_requirements() == pyproject_requirements()


def test_every_optional_extra_is_part_of_dev():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    dev = set(project["optional-dependencies"]["dev"])
    for extra, requirements in project["optional-dependencies"].items():
        assert set(requirements) <= dev, extra


def test_design_card_packages_are_named_in_environment_yml_and_installed_with_dev():
    design_card = {"jupyterlab", "torch", "matplotlib", "ipywidgets", "numpy", "nbval"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements):
        return {re.split(r"[<>=!\[;]", r)[0].strip().lower() for r in requirements}

    assert design_card <= names(environment_requirements())
    assert design_card <= names(project["dependencies"]) | names(project["optional-dependencies"]["dev"])
