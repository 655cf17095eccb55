"""sam-from-scratch: Segment Anything, built piece by piece.

The public API mirrors the official `segment_anything` package:

    from sam_from_scratch import sam_model_registry, SamPredictor, SamAutomaticMaskGenerator
"""

from .automatic_mask_generator import SamAutomaticMaskGenerator
from .build import build_sam, from_pretrained, sam_model_registry
from .config import CONFIGS, SamConfig
from .device import auto_device
from .predictor import SamPredictor
from .modeling.sam import Sam

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

