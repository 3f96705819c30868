"""Depth Anything 3 in pure torch (no ROS): checkpoint-compatible port of the
official network with a streaming split (per-frame encode, per-window cross-view
pass) and a deterministic ray-to-pose solver. The streaming core's adapter
around it is `da3_ros.runtime.da3_model.DA3WindowModel`.

    from da3_ros.model import load_model, infer
"""

from .config import VARIANTS, DA3Config, NestedConfig, canonical_name, get_config
from .loading import DA3LoadError, load_model, save_hub_layout
from .net import DA3Net, FrameTokens, NestedDA3Net, build_model

__all__ = [
    "VARIANTS", "DA3Config", "NestedConfig", "canonical_name", "get_config",
    "DA3LoadError", "load_model", "save_hub_layout",
    "DA3Net", "NestedDA3Net", "FrameTokens", "build_model",
    "infer", "Prediction",
]


def __getattr__(name):  # lazy: keep `import da3_ros.model` light
    if name in ("infer", "Prediction"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
