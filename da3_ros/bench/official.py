"""(a): the official `depth_anything_3` network with random weights, built on
the CPU, its state dict loaded into da3_ros.model (so (b) and (c) share its
weights), and its forward on a preprocessed window."""

from __future__ import annotations

import sys
import tempfile
import warnings
from typing import Optional, Tuple

import torch

from .common import _autocast


def official_available() -> Tuple[bool, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import depth_anything_3.cfg  # noqa: F401
            from depth_anything_3.registry import MODEL_REGISTRY  # noqa: F401
        return True, ""
    except Exception as exc:  # ImportError or a missing dependency of the package
        return False, f"official depth_anything_3 not importable ({type(exc).__name__}: {exc})"


def _stub_pose_align() -> Optional[str]:
    """The official giant builds its 3D-Gaussian adapter, whose module imports `evo` (only for
    pose alignment in the GS branch, never run here: infer_gs=False). Without `evo`, stand in a
    stub for `depth_anything_3.utils.pose_align` so the network can be built."""
    try:
        import depth_anything_3.utils.pose_align  # noqa: F401
        return None
    except ImportError as exc:
        import types

        def _unavailable(*_a, **_k):
            raise RuntimeError("depth_anything_3.utils.pose_align is stubbed by da3_ros bench (evo missing)")

        mod = types.ModuleType("depth_anything_3.utils.pose_align")
        mod.align_poses_umeyama = mod.batch_align_poses_umeyama = _unavailable
        sys.modules[mod.__name__] = mod
        return f"official pose_align stubbed ({exc}); only the unused GS branch needs it"


def build_official(variant: str, seed: int = 0) -> torch.nn.Module:
    """Random-weight official network (as test/model/conftest.py builds it), CPU, eval mode."""
    _stub_pose_align()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from depth_anything_3 import cfg as cfg_mod
        from depth_anything_3.registry import MODEL_REGISTRY

        torch.manual_seed(seed)
        return cfg_mod.create_object(cfg_mod.load_config(MODEL_REGISTRY[variant])).eval()


def load_ported_from(official: torch.nn.Module, variant: str) -> torch.nn.Module:
    """Write the official state dict as a hub-layout dir in a temp dir and load it with `load_model`."""
    from da3_ros.model import load_model, save_hub_layout

    with tempfile.TemporaryDirectory(prefix=f"da3bench_{variant}_") as d:
        save_hub_layout(official.state_dict(), d, variant)
        return load_model(d, "cpu")


def official_forward(net, x: torch.Tensor, amp: Optional[torch.dtype], pose_source: str):
    with torch.inference_mode(), _autocast(x.device, amp):
        return net(x, None, None, [], False, pose_source == "ray", "saddle_balanced")
