"""Helpers shared by the model tests (imported by module name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import warnings

import pytest
import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def run_official(net, images, **kw):
    """Official forward; also returns the head's raw output (rays are dropped from its result)."""
    cap = {}
    h = net.head.register_forward_hook(lambda m, i, o: cap.update({k: v.clone() for k, v in o.items()}))
    try:
        with torch.no_grad():
            out = net(images, **kw)
    finally:
        h.remove()
    return out, cap


def random_cameras(S: int, H: int, W: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(S, 4, generator=g), dim=-1)
    from da3_ros.model.camera import quat_to_rotmat

    R = quat_to_rotmat(q)
    t = torch.randn(S, 3, generator=g)
    w2c = torch.eye(4).repeat(S, 1, 1)
    w2c[:, :3, :3], w2c[:, :3, 3] = R, t
    f = 0.8 * W + 0.1 * W * torch.rand(S, generator=g)
    K = torch.zeros(S, 3, 3)
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f * 1.02, W / 2, H / 2, 1
    return w2c[None], K[None]


def _official():
    return pytest.importorskip(
        "depth_anything_3.cfg",
        reason="the official depth-anything-3 package (pip install --no-deps depth-anything-3==0.1.1) "
        "is the parity oracle",
    )


def official_config(variant: str):
    cfg_mod = _official()
    from depth_anything_3.registry import MODEL_REGISTRY

    return cfg_mod.load_config(MODEL_REGISTRY[variant])


def build_official(variant: str, seed: int = 0):
    """Random-weight official network (DepthAnything3Net / NestedDepthAnything3Net), eval mode."""
    cfg_mod = _official()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg_mod.create_object(official_config(variant)).eval()
