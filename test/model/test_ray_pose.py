"""The ray-map pose solver: exact recovery, noise, outliers, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from da3_ros.model.ray_pose import denormalize_intrinsics, rays_from_camera, solve_rays

H, W, h, w = 280, 504, 80, 144


def cameras(n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    R = torch.tensor(Rotation.from_rotvec(rng.normal(size=(n, 3)) * 0.8).as_matrix(), dtype=torch.float32)
    t = torch.tensor(rng.normal(size=(n, 3)) * 2, dtype=torch.float32)
    f = torch.tensor(rng.uniform(250, 500, size=n), dtype=torch.float32)
    K = torch.zeros(n, 3, 3)
    K[:, 0, 0], K[:, 1, 1] = f, f * torch.tensor(rng.uniform(0.95, 1.05, size=n), dtype=torch.float32)
    K[:, 0, 2] = W / 2 + torch.tensor(rng.uniform(-20, 20, size=n), dtype=torch.float32)
    K[:, 1, 2] = H / 2 + torch.tensor(rng.uniform(-15, 15, size=n), dtype=torch.float32)
    K[:, 2, 2] = 1
    return torch.cat((R, t[..., None]), -1), K


def errors(c2w, K, c2w_e, K_n):
    K_e = denormalize_intrinsics(K_n, H, W)
    rot = (c2w_e[:, :, :3] - c2w[:, :, :3]).abs().max().item()
    trans = (c2w_e[:, :, 3] - c2w[:, :, 3]).abs().max().item()
    k = ((K_e - K).abs().amax(dim=(1, 2)) / K[:, 0, 0]).max().item()
    return rot, trans, k


def test_exact_rays_recover_camera_to_1e5():
    c2w, K = cameras()
    ray = rays_from_camera(c2w, K, h, w, H, W)
    ray[..., :3] *= torch.linspace(0.5, 3.0, 3)[:, None, None, None]  # direction length is free
    conf = 1 + torch.rand(3, h, w, generator=torch.Generator().manual_seed(1))
    rot, trans, k = errors(c2w, K, *solve_rays(ray, conf)[:2])
    assert rot < 1e-5 and trans < 1e-5 and k < 1e-5


def test_noise_and_outliers():
    c2w, K = cameras(seed=4)
    ray = rays_from_camera(c2w, K, h, w, H, W)
    g = torch.Generator().manual_seed(2)
    noisy = ray.clone()
    noisy[..., :3] += 0.003 * torch.randn(ray[..., :3].shape, generator=g) * ray[..., :3].norm(dim=-1, keepdim=True)
    out = torch.rand(3, h, w, generator=g) < 0.25  # a quarter of the rays are garbage
    noisy[..., :3][out] = torch.randn(int(out.sum()), 3, generator=g) * 5
    noisy[..., 3:][out] += torch.randn(int(out.sum()), 3, generator=g)
    conf = torch.ones(3, h, w) + 1
    conf[out] = 2.0  # outliers are not flagged by the confidence
    c2w_e, K_n, wts = solve_rays(noisy, conf)
    rot, trans, k = errors(c2w, K, c2w_e, K_n)
    assert rot < 2e-3 and k < 2e-3
    assert trans < 0.05  # origins: outliers are down-weighted by the direction residuals
    # the robust weights reject the outliers (map small enough: no sub-sampling)
    flat = out.reshape(3, -1)
    assert wts[flat].mean() < 0.05 * wts[~flat].mean()


def test_confidence_weighting_ignores_zero_confidence_garbage():
    c2w, K = cameras(1, seed=7)
    ray = rays_from_camera(c2w, K, h, w, H, W)
    bad = torch.zeros(1, h, w, dtype=torch.bool)
    bad[:, :, : w // 2] = True  # half the map is wrong but has zero confidence
    ray[..., :3][bad] = torch.tensor([0.0, 1.0, 0.0])
    conf = torch.where(bad, torch.zeros(()), torch.ones(()))
    rot, trans, k = errors(c2w, K, *solve_rays(ray, conf)[:2])
    assert rot < 1e-4 and k < 1e-4 and trans < 1e-5


def test_deterministic_and_global_rng_untouched():
    c2w, K = cameras(2, seed=9)
    ray = rays_from_camera(c2w, K, h, w, H, W)
    ray[..., :3] += 0.01 * torch.randn(ray[..., :3].shape, generator=torch.Generator().manual_seed(3))
    conf = torch.ones(2, h, w)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = solve_rays(ray, conf)
    assert torch.equal(before, torch.random.get_rng_state())
    torch.manual_seed(456)
    b = solve_rays(ray, conf)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_large_map_is_subsampled_and_still_exact():
    c2w, K = cameras(1, seed=11)
    ray = rays_from_camera(c2w, K, 160, 288, H, W)
    rot, trans, k = errors(c2w, K, *solve_rays(ray, torch.ones(1, 160, 288), max_points=4096)[:2])
    assert rot < 1e-5 and k < 1e-5



@pytest.mark.parametrize("factor", [2, 4])
def test_coarse_map_grid_and_exact_recovery(factor):
    """Rays of a camera sampled where a coarse ray map's samples sit (`ray_map_grid`) give the
    camera exactly; the grid's corners are the full map's corner pixel centres."""
    from da3_ros.model.ray_pose import ray_map_grid

    h, w = 160 // factor, 288 // factor
    g = ray_map_grid(h, w, factor)
    full = ray_map_grid(factor * h, factor * w)
    for corner in ((0, 0), (-1, -1), (0, -1), (-1, 0)):
        assert torch.allclose(g[corner], full[corner], atol=1e-6)
    c2w, K = cameras(seed=5)
    Kn = torch.linalg.solve(torch.tensor([[W / 2, 0, W / 2], [0, H / 2, H / 2], [0, 0, 1.0]]), K)
    p = torch.cat((g, torch.ones_like(g[..., :1])), -1)
    dirs = torch.einsum("vij,hwj->vhwi", c2w[:, :3, :3] @ torch.linalg.inv(Kn), p)
    rays = torch.cat((2.0 * dirs, c2w[:, None, None, :3, 3].expand_as(dirs)), -1)
    conf = 1 + torch.rand(3, h, w, generator=torch.Generator().manual_seed(6))
    rot, trans, k = errors(c2w, K, *solve_rays(rays, conf, max_points=1024, grid=g)[:2])
    assert rot < 1e-5 and trans < 1e-5 and k < 1e-5
    # the same rays placed at pixel centres (the wrong grid) give a wrong camera
    rot, trans, k = errors(c2w, K, *solve_rays(rays, conf, max_points=1024)[:2])
    assert k > 1e-3
