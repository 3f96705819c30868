"""infer(): official pose-conditioning normalisation and its inverse, outputs in the caller's frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from da3_ros.model import infer, load_model
from da3_ros.model.api import denormalize_w2c, normalize_poses
from da3_ros.model.camera import invert_rigid, quat_to_rotmat


def _poses(S=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(S, 1, 1)
    c2w[:, :3, :3] = quat_to_rotmat(torch.randn(S, 4, generator=g))
    c2w[:, :3, 3] = 3 * torch.randn(S, 3, generator=g)
    return c2w


def test_normalisation_round_trip():
    c2w = _poses()
    w2c_n, first, med = normalize_poses(c2w)
    assert torch.allclose(w2c_n[0], torch.eye(4), atol=1e-5)  # first camera is the world
    assert torch.median(invert_rigid(w2c_n)[:, :3, 3].norm(dim=-1)) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(denormalize_w2c(w2c_n, first, med), invert_rigid(c2w), atol=1e-4)


@pytest.fixture(scope="module")
def small():
    with pytest.warns(UserWarning):
        return load_model("random:da3-small")


def test_infer_shapes_and_conditioned_frame(small):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    K = np.tile(np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), (3, 1, 1))
    free = infer(small, frames, process_res=126)
    assert free.depth.shape == (3, 98, 126) and free.extrinsics.shape == (3, 3, 4)
    assert free.native_depth(1).shape == (48, 64) and free.native_intrinsics().shape == (3, 3, 3)
    c2w = _poses(3, seed=1).numpy()
    cond = infer(small, frames, intrinsics=K, poses=c2w, process_res=126)
    assert np.isfinite(cond.extrinsics).all() and cond.c2w.shape == (3, 4, 4)
    assert not np.allclose(free.depth, cond.depth)
    with pytest.raises(ValueError, match="intrinsics"):
        infer(small, frames, poses=c2w, process_res=126)
