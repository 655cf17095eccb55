"""sam-from-scratch: Segment Anything, built piece by piece.

The public API mirrors the official `segment_anything` package:

    from sam_from_scratch import sam_model_registry, SamPredictor, SamAutomaticMaskGenerator
"""

from .amg import SamAutomaticMaskGenerator
from .build import CONFIGS, SamConfig, build_sam, from_pretrained, sam_model_registry
from .device import auto_device
from .predictor import SamPredictor
from .sam import Sam

__version__ = "0.1.0"

__all__ = [
    "CONFIGS",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "auto_device",
    "build_sam",
    "from_pretrained",
    "sam_model_registry",
]

