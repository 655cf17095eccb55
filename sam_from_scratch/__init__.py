"""sam-from-scratch: Segment Anything, built piece by piece.

The public API mirrors the official `segment_anything` package:

    from sam_from_scratch import sam_model_registry, SamPredictor, SamAutomaticMaskGenerator

The names below are imported on first use, so that `import sam_from_scratch` (and the command line's
--help and --version) does not pay for importing torch. Every module path of the official package has a twin
here (`sam_from_scratch.build_sam`, `.modeling`, `.predictor`, `.automatic_mask_generator`, `.utils.transforms`,
`.utils.amg`, `.utils.onnx`).
"""

import sys
import types

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CONFIGS": "config",
    "Sam": "modeling.sam",
    "SamAutomaticMaskGenerator": "automatic_mask_generator",
    "SamConfig": "config",
    "SamPredictor": "predictor",
    "auto_device": "device",
    "build_sam": "build_sam",
    "build_sam_vit_b": "build",
    "build_sam_vit_h": "build",
    "build_sam_vit_l": "build",
    "from_pretrained": "build",
    "sam_model_registry": "build",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        from importlib import import_module

        value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # later look-ups find it directly
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`build_sam` names both a submodule and a function, as in the official package, where the function wins.

    Importing the submodule `sam_from_scratch.build_sam` would bind the package attribute to the module; the
    official package rebinds it to the function when it is imported, and this keeps the function here too.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return  # the module stays reachable through sys.modules and `from ... import`
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
