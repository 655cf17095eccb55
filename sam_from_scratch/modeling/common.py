"""The two shared layers under the module name the official package gives them: `modeling.common`.

They are written in `layers.py`; this module only names them again, so code written against the official
package (`from segment_anything.modeling.common import LayerNorm2d`) runs here with `sam_from_scratch` instead.
"""

from .layers import LayerNorm2d, MLPBlock

__all__ = ["LayerNorm2d", "MLPBlock"]
