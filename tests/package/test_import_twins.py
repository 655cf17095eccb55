"""Every public name of the official `segment_anything` has a twin under the same module path here.

The names are read from the installed official package, not listed by hand: every module that pkgutil finds in
it, and in each module the names it defines at top level (functions, classes, assignments such as
`build_sam = build_sam_vit_h` and `sam_model_registry`), the names it imports from the official package itself
(reachable from it, so some users import them from there), and its __all__. Leading underscores are private. A
twin must be callable the same way: the same parameter names in the same order, of a compatible kind, with the
same defaults; parameters of ours beyond the official ones must have defaults. For classes, the constructor and
every public method the official class defines; for dicts (the registry), every official key.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil

import pytest

segment_anything = pytest.importorskip("segment_anything", reason="the official package is the oracle (dev extra)")

OURS = "sam_from_scratch"

# Official names whose twin deliberately differs, with the reason.
EXCLUDED: dict[str, str] = {
    "segment_anything.modeling.image_encoder.PatchEmbed": (
        "an inner layer no user builds; ours takes one patch_size (SAM's patches never overlap), as notebook 05 "
        "teaches it, instead of a general kernel_size/stride/padding; the state-dict key proj is the same"
    ),
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def official_modules() -> list[str]:
    found = pkgutil.walk_packages(segment_anything.__path__, prefix="segment_anything.")
    return ["segment_anything"] + sorted(info.name for info in found)


def public_names(module_name: str) -> list[str]:
    """The names `module_name` defines at top level or imports from its own package (users import them from it
    too, e.g. Sam from segment_anything.build_sam); plus __all__."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    names = set(getattr(module, "__all__", ()))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("segment_anything")):
            names.update(alias.asname or alias.name for alias in node.names)  # e.g. build_sam's model classes
    return sorted(n for n in names if not n.startswith("_") and n != "__all__")


OFFICIAL_NAMES = [(m, n) for m in official_modules() for n in public_names(m)]


def twin_module_name(official_module: str) -> str:
    return OURS + official_module[len("segment_anything"):]


def default_differs(official, ours) -> bool:
    if official is ours:
        return False
    try:
        return bool(official != ours)
    except Exception:  # e.g. arrays: compared by identity only
        return True


def signature_problems(official, ours) -> list[str]:
    """Why `ours` cannot be called the way `official` is (empty when it can)."""
    try:
        theirs, mine = inspect.signature(official), inspect.signature(ours)
    except (TypeError, ValueError):
        return []  # builtins without a signature: nothing to compare
    problems = []
    their_fixed = [p for p in theirs.parameters.values() if p.kind not in _VARIADIC]
    my_fixed = [p for p in mine.parameters.values() if p.kind not in _VARIADIC]
    for i, p in enumerate(their_fixed):
        if i >= len(my_fixed):
            problems.append(f"missing parameter {p.name!r}")
            continue
        q = my_fixed[i]
        if q.name != p.name:
            problems.append(f"parameter {i} is {q.name!r}, official {p.name!r}")
            break  # the parameters after it are shifted: more messages would only repeat this one
        if p.kind in _POSITIONAL and q.kind not in _POSITIONAL:
            problems.append(f"{p.name!r} is {q.kind.description}, official {p.kind.description}")
        if p.kind == inspect.Parameter.KEYWORD_ONLY and q.kind == inspect.Parameter.POSITIONAL_ONLY:
            problems.append(f"{p.name!r} is positional-only, official keyword-only")
        if p.default is not p.empty:
            if q.default is q.empty:
                problems.append(f"{p.name!r} has no default, official {p.default!r}")
            elif default_differs(p.default, q.default):
                problems.append(f"{p.name!r} defaults to {q.default!r}, official {p.default!r}")
    for q in my_fixed[len(their_fixed):]:
        if q.default is q.empty:
            problems.append(f"extra parameter {q.name!r} has no default")
    for kind in _VARIADIC:
        if any(p.kind == kind for p in theirs.parameters.values()) and not any(
            q.kind == kind for q in mine.parameters.values()
        ):
            problems.append(f"no {kind.description} parameter, the official one has one")
    return problems


def public_methods(cls: type) -> dict[str, object]:
    """The public methods (and static/class methods, properties) that `cls` itself defines."""
    found = {}
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (staticmethod, classmethod, property)) or inspect.isfunction(value):
            found[name] = value
    return found


def twin_problems(official, ours) -> list[str]:
    if inspect.isclass(official):
        if not inspect.isclass(ours):
            return [f"is {type(ours).__name__}, official a class"]
        problems = [f"constructor: {p}" for p in signature_problems(official, ours)]
        for name, value in public_methods(official).items():
            mine = inspect.getattr_static(ours, name, None)
            if mine is None:
                problems.append(f"no method {name}")
            elif isinstance(value, property):
                problems += [] if isinstance(mine, property) else [f"{name} is not a property"]
            else:
                problems += [f"{name}: {p}" for p in signature_problems(getattr(official, name), getattr(ours, name))]
        return problems
    if callable(official):
        return signature_problems(official, ours) if callable(ours) else [f"is {type(ours).__name__}, not callable"]
    if isinstance(official, dict):
        if not isinstance(ours, dict):
            return [f"is {type(ours).__name__}, official a dict"]
        problems = [f"no key {key!r}" for key in official if key not in ours]
        for key, value in official.items():
            if key in ours and callable(value):
                problems += [f"[{key!r}]: {p}" for p in signature_problems(value, ours[key])]
        return problems
    return []


def test_the_names_are_found_in_the_official_package():
    """The walk sees the official surface (a walk that found nothing would make every other test vacuous)."""
    found = {f"{m}.{n}" for m, n in OFFICIAL_NAMES}
    expected = {
        "segment_anything.sam_model_registry", "segment_anything.SamPredictor", "segment_anything.build_sam",
        "segment_anything.build_sam.build_sam_vit_b", "segment_anything.modeling.Sam",
        "segment_anything.utils.transforms.ResizeLongestSide", "segment_anything.utils.amg.MaskData",
        "segment_anything.utils.onnx.SamOnnxModel", "segment_anything.automatic_mask_generator.SamAutomaticMaskGenerator",
    }
    assert expected <= found
    assert set(EXCLUDED) <= found, "an exclusion names nothing the official package has"


@pytest.mark.parametrize("module_name,name", OFFICIAL_NAMES, ids=[f"{m}.{n}" for m, n in OFFICIAL_NAMES])
def test_official_name_has_a_compatible_twin(module_name, name):
    if f"{module_name}.{name}" in EXCLUDED:
        pytest.skip(EXCLUDED[f"{module_name}.{name}"])
    official = getattr(importlib.import_module(module_name), name)
    ours_module = importlib.import_module(twin_module_name(module_name))
    assert hasattr(ours_module, name), f"{twin_module_name(module_name)} has no {name}"
    problems = twin_problems(official, getattr(ours_module, name))
    assert not problems, f"{twin_module_name(module_name)}.{name}: " + "; ".join(problems)


def test_the_signature_check_can_fail():
    def official(a, b=1, *, c=2): ...

    def renamed(a, bb=1, *, c=2): ...

    def other_default(a, b=3, *, c=2): ...

    def extra_without_default(a, b=1, d=None, *, c=2, e): ...

    def compatible(a, b=1, c=2, extra=None, **options): ...

    assert signature_problems(official, renamed) == ["parameter 1 is 'bb', official 'b'"]
    assert signature_problems(official, other_default) == ["'b' defaults to 3, official 1"]
    assert signature_problems(official, extra_without_default) == [
        "parameter 2 is 'd', official 'c'", "extra parameter 'e' has no default",
    ]
    assert signature_problems(official, compatible) == []


def test_build_sam_is_the_function_even_after_its_module_is_imported():
    import sam_from_scratch
    import sam_from_scratch.build_sam  # binds the submodule on the package, unless the package keeps the function
    from sam_from_scratch.build_sam import build_sam_vit_b

    assert callable(sam_from_scratch.build_sam) and inspect.isfunction(sam_from_scratch.build_sam)
    assert sam_from_scratch.build_sam_vit_b is build_sam_vit_b


def test_build_sam_takes_the_official_and_the_course_call(monkeypatch):
    import sam_from_scratch.build_sam as twin  # the function: `import ... as` reads the package attribute
    from sam_from_scratch import CONFIGS, build_sam
    from sam_from_scratch.errors import SamInputError

    tiny = build_sam(CONFIGS["tiny"], fast=False)  # the course's call
    assert tiny.image_encoder.img_size == CONFIGS["tiny"].image_size
    with pytest.raises(SamInputError, match="checkpoint"):
        build_sam(checkpoint=123)  # the official call, with a wrong argument: refused before vit_h is built

    calls = []
    module = importlib.import_module("sam_from_scratch.build_sam")
    monkeypatch.setattr(module, "build_from_config", lambda *args, **kwargs: calls.append((args, kwargs)))
    build_sam("sam_vit_h_4b8939.pth")  # the official call: vit_h, without building it here
    assert twin is build_sam
    assert calls == [((CONFIGS["vit_h"],), dict(checkpoint="sam_vit_h_4b8939.pth", variant="vit_h", fast=True))]


def test_from_pretrained_says_when_a_path_names_no_file(tmp_path):
    from sam_from_scratch import from_pretrained
    from sam_from_scratch.errors import SamInputError

    missing = tmp_path / "sam_vit_b.pth"
    with pytest.raises(SamInputError) as info:
        from_pretrained(str(missing), device="cpu")
    assert str(info.value) == (f"name: expected 'tiny', 'vit_b', 'vit_l', 'vit_h' or a path to a checkpoint, got "
                               f"{str(missing)!r}. There is no file or folder at {missing}.")
    with pytest.raises(SamInputError, match=r"got 'vitb'\.$"):  # a misspelt name is not called a path
        from_pretrained("vitb", device="cpu")


@pytest.mark.parametrize("call", ["from_pretrained(None)", "build(checkpoint=123)", "registry(checkpoint=[1])"])
def test_wrong_argument_types_raise_a_clear_error(call):
    from sam_from_scratch import CONFIGS, from_pretrained, sam_model_registry
    from sam_from_scratch.build import build_sam as build
    from sam_from_scratch.errors import SamInputError

    calls = {
        "from_pretrained(None)": (lambda: from_pretrained(None), "name"),
        "build(checkpoint=123)": (lambda: build(CONFIGS["tiny"], checkpoint=123), "checkpoint"),
        "registry(checkpoint=[1])": (lambda: sam_model_registry["vit_b"](checkpoint=[1]), "checkpoint"),
    }
    function, argument = calls[call]
    with pytest.raises(SamInputError, match=f"^{argument}: expected .* got"):
        function()
