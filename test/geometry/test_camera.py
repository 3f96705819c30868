"""Pinhole helpers: back-projection, intrinsics scaling, pixel grids."""

from __future__ import annotations

import numpy as np

from da3_ros.geometry import backproject, depth_to_points, scale_intrinsics


def test_backproject_projects_back():
    K = np.array([[100.0, 0, 31.5], [0, 110.0, 23.5], [0, 0, 1]])
    rng = np.random.default_rng(0)
    u, v, z = rng.uniform(0, 64, 50), rng.uniform(0, 48, 50), rng.uniform(0.5, 9, 50)
    X = backproject(z, u, v, K)
    np.testing.assert_allclose(X[:, 2], z)
    np.testing.assert_allclose(K[0, 0] * X[:, 0] / X[:, 2] + K[0, 2], u, atol=1e-9)
    np.testing.assert_allclose(K[1, 1] * X[:, 1] / X[:, 2] + K[1, 2], v, atol=1e-9)


def test_depth_to_points_mask_stride_and_pose():
    K = np.array([[50.0, 0, 7.5], [0, 50.0, 5.5], [0, 0, 1]])
    depth = np.full((12, 16), 2.0, np.float32)
    depth[0, 0] = np.nan
    depth[1, 1] = 0.0
    pts, flat = depth_to_points(depth, K)
    assert len(pts) == 12 * 16 - 2 and 0 not in flat and 17 not in flat
    pts2, flat2 = depth_to_points(depth, K, stride=2)
    assert set(flat2.tolist()) <= set(flat.tolist()) and len(pts2) == 6 * 8 - 1
    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 3.0]
    pw, _ = depth_to_points(depth, K, c2w=T)
    np.testing.assert_allclose(pw - pts, np.tile([1.0, 2.0, 3.0], (len(pts), 1)))
    mask = np.zeros_like(depth, bool)
    mask[5, 5] = True
    assert len(depth_to_points(depth, K, mask=mask)[0]) == 1


def test_scale_intrinsics_pixel_centres():
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])  # exact centre of 64x48
    K2 = scale_intrinsics(K, 0.5, 0.5)  # 32x24
    np.testing.assert_allclose(K2[:2, 2], [15.5, 11.5])
    np.testing.assert_allclose([K2[0, 0], K2[1, 1]], [50.0, 50.0])
