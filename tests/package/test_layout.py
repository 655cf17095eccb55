"""The house: each room holds one idea, imports run one way, and the plain model stays plain.

- no import cycles between the package's modules, counting imports inside functions (lazy ones) too;
- the plain model (modeling/) imports nothing but itself, utils/ and the standard library and torch;
- config.py is a leaf: it imports nothing from the package;
- every file of the plain model is short enough to read in one sitting.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sam_from_scratch"
MODELING_MAX_LINES = 265


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path) -> set[str]:
    """The package modules that `path` imports anywhere in its code (top level or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("sam_from_scratch"):
                for alias in node.names:  # `from . import x` may name a submodule rather than a name in target
                    candidate = f"{target}.{alias.name}"
                    found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sam_from_scratch"))
    return {m for m in found if m in MODULES and m != name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: package_imports(path) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_not_even_lazy_ones():
    assert find_cycle(GRAPH) is None


def test_the_config_module_is_a_leaf():
    assert GRAPH["sam_from_scratch.config"] == set()


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("sam_from_scratch.modeling")))
def test_the_plain_model_imports_only_itself_and_utils(name):
    allowed = ("sam_from_scratch.modeling", "sam_from_scratch.utils")
    assert all(dep.startswith(allowed) for dep in GRAPH[name]), GRAPH[name]


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("sam_from_scratch.modeling.")))
def test_each_plain_model_file_is_short(name):
    assert len(MODULES[name].read_text().splitlines()) <= MODELING_MAX_LINES


def test_the_fast_paths_are_apart_from_the_plain_model():
    assert not any(dep.startswith("sam_from_scratch.fast") for name in MODULES if ".modeling" in name
                   for dep in GRAPH[name])
