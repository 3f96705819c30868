"""The streaming split is exact: encode() per frame + forward_window() on the window
equals the full forward for the decoded frames, and poses for every frame."""

from __future__ import annotations

import pytest
import torch

from da3_ros.model import load_model
from da3_ros.model.config import DA3Config, HeadConfig, NestedConfig, ViTConfig, get_config
from da3_ros.model.net import build_model

from model_test_utils import random_cameras, rel_err

TOL = 1e-5


@pytest.fixture(scope="module")
def small():
    with pytest.warns(UserWarning, match="RANDOM"):
        return load_model("random:da3-small")


@pytest.mark.parametrize("S,decode,strategy,pose_source", [
    (1, [0], "saddle_balanced", "camera"),
    (2, [1], "saddle_balanced", "camera"),
    (4, [1, 3], "saddle_balanced", "camera"),
    (5, [4], "middle", "camera"),
    (4, [0, 2], "saddle_sim_range", "ray"),
])
def test_window_equals_full_forward(small, S, decode, strategy, pose_source):
    torch.manual_seed(10 + S)
    images = torch.randn(1, S, 3, 56, 84)
    with torch.no_grad():
        full = small(images, pose_source=pose_source, reference_strategy=strategy)
        cached = small.encode(images[0])  # frame by frame would give the same tokens
        win = small.forward_window(cached, decode, pose_source=pose_source, reference_strategy=strategy)
    assert win["depth"].shape == (1, len(decode), 56, 84)
    assert rel_err(full["depth"][:, decode], win["depth"]) < TOL
    assert rel_err(full["depth_conf"][:, decode], win["depth_conf"]) < TOL
    assert win["extrinsics"].shape == (1, S, 3, 4)
    assert rel_err(full["extrinsics"], win["extrinsics"]) < TOL
    assert rel_err(full["intrinsics"], win["intrinsics"]) < TOL
    if pose_source == "camera":
        assert "ray" not in win  # the ray branch is skipped when it is not needed


def test_encode_is_per_frame(small):
    """Tokens of a frame do not depend on the other frames encoded with it."""
    torch.manual_seed(3)
    images = torch.randn(3, 3, 56, 84)
    with torch.no_grad():
        together = small.encode(images)
        alone = [small.encode(images[i:i + 1])[0] for i in range(3)]
    for a, b in zip(together, alone):
        assert rel_err(a.tokens, b.tokens) < 1e-6
        assert rel_err(a.selector, b.selector) < 1e-6


def test_window_with_pose_conditioning(small):
    S, H, W = 3, 56, 84
    torch.manual_seed(5)
    images = torch.randn(1, S, 3, H, W)
    w2c, K = random_cameras(S, H, W, seed=2)
    with torch.no_grad():
        full = small(images, extrinsics=w2c, intrinsics=K)
        win = small.forward_window(small.encode(images[0]), [2], extrinsics=w2c, intrinsics=K)
    assert rel_err(full["depth"][:, [2]], win["depth"]) < TOL
    assert rel_err(full["extrinsics"], win["extrinsics"]) < TOL


def _tiny_metric() -> DA3Config:
    return DA3Config(name="da3metric-small-test",
                     vit=ViTConfig(384, 12, 6, (4, 7, 9, 11), alt_start=-1, cat_token=False),
                     head=HeadConfig("dpt", 384, 64, (48, 96, 192, 384), output_dim=1))


def test_nested_window_equals_full_forward():
    torch.manual_seed(0)
    net = build_model(NestedConfig("nested-test", get_config("da3-small"), _tiny_metric()))
    images = torch.randn(1, 3, 3, 56, 84)
    with torch.no_grad():
        full = net(images)
        win = net.forward_window(net.encode(images[0]), [0, 1, 2])
    for k in ("depth", "depth_conf", "extrinsics", "intrinsics"):
        assert rel_err(full[k], win[k]) < TOL, k
    assert float(full["scale_factor"]) > 0


@pytest.mark.parametrize("ray_map", ["half", "quarter"])
def test_coarse_ray_maps_give_cameras(small, ray_map):
    """The coarse ray maps of the streaming path (the node's default is "quarter") give a finite
    pinhole camera per view; the official map stays the default of `forward_window`."""
    import inspect

    assert inspect.signature(small.forward_window).parameters["ray_map"].default == "full"
    torch.manual_seed(12)
    images = torch.randn(1, 3, 3, 56, 84)
    with torch.no_grad():
        win = small.forward_window(small.encode(images[0]), [2], pose_source="ray", ray_map=ray_map)
    K = win["intrinsics"][0]
    assert win["extrinsics"].shape == (1, 3, 3, 4) and torch.isfinite(win["extrinsics"]).all()
    assert torch.isfinite(K).all() and (K[:, 0, 0] > 0).all() and (K[:, 1, 1] > 0).all()
    assert (K[:, 0, 1] == 0).all()
