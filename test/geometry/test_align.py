"""Umeyama and the robust (IRLS, Huber) Sim(3)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from da3_ros.geometry import DegenerateAlignment, Sim3, robust_sim3, rotation_angle_deg, spread_ratios, umeyama


def random_sim3(rng) -> Sim3:
    return Sim3(float(np.exp(rng.uniform(-1, 1))), Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 3, 3))


def sim3_error(a: Sim3, b: Sim3):
    return abs(np.log(a.scale / b.scale)), float(rotation_angle_deg(a.R.T @ b.R)), float(np.linalg.norm(a.t - b.t))


@pytest.mark.parametrize("seed", range(5))
def test_umeyama_recovers_exact_transform(seed):
    rng = np.random.default_rng(seed)
    T = random_sim3(rng)
    x = rng.normal(0, 2, (50, 3))
    est = umeyama(x, T.apply_points(x))
    ds, dr, dt = sim3_error(est, T)
    assert ds < 1e-10 and dr < 1e-8 and dt < 1e-9
    se3 = umeyama(x, Sim3(1.0, T.R, T.t).apply_points(x), with_scale=False)
    assert se3.scale == 1.0 and sim3_error(se3, Sim3(1.0, T.R, T.t))[1] < 1e-8


def test_umeyama_weights_ignore_zero_weighted_points():
    rng = np.random.default_rng(0)
    T = random_sim3(rng)
    x = rng.normal(0, 2, (40, 3))
    y = T.apply_points(x)
    y[:10] += rng.normal(0, 5, (10, 3))
    w = np.r_[np.zeros(10), np.ones(30)]
    assert max(sim3_error(umeyama(x, y, w), T)) < 1e-8
    assert max(sim3_error(umeyama(x, y), T)) > 1e-2  # unweighted, the outliers do hurt


def test_umeyama_handles_reflection_case():
    """A mirrored point set must still give a proper rotation (det +1)."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (20, 3))
    y = x * np.array([1, 1, -1])
    assert np.linalg.det(umeyama(x, y).R) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_robust_sim3_with_outliers(seed):
    rng = np.random.default_rng(seed)
    T = random_sim3(rng)
    n = 400
    x = rng.normal(0, 2, (n, 3))
    y = T.apply_points(x) + rng.normal(0, 1e-3, (n, 3))
    bad = rng.random(n) < 0.25
    y[bad] += rng.normal(0, 3.0, (bad.sum(), 3))  # gross outliers
    conf = np.where(bad, 1.1, 5.0) * rng.uniform(0.8, 1.2, n)  # outliers a bit less confident
    res = robust_sim3(x, y, conf)
    ds, dr, dt = sim3_error(res.sim3, T)
    plain = sim3_error(umeyama(x, y, conf), T)
    assert ds < 2e-3 and dr < 0.1 and dt < 1e-2, (ds, dr, dt)
    assert max(plain[0], plain[1] / 10, plain[2]) > 10 * max(ds, dr / 10, dt)  # IRLS is what fixes it
    assert abs(res.inlier_fraction - (1 - bad.mean())) < 0.05
    assert np.median(res.weights[bad]) < 0.1 * np.median(res.weights[~bad])


def test_robust_sim3_exact_data_stays_exact():
    rng = np.random.default_rng(3)
    T = random_sim3(rng)
    x = rng.normal(0, 1, (100, 3))
    res = robust_sim3(x, T.apply_points(x), residual_scale=np.linalg.norm(x, axis=1))
    assert max(sim3_error(res.sim3, T)) < 1e-9 and res.inlier_fraction == 1.0


def test_degenerate_inputs():
    x = np.ones((10, 3))
    with pytest.raises(DegenerateAlignment):
        umeyama(x, x + 1.0)
    with pytest.raises(DegenerateAlignment):
        umeyama(np.zeros((0, 3)), np.zeros((0, 3)))
    line = np.outer(np.linspace(0, 1, 20), [1.0, 2.0, 3.0])
    r = spread_ratios(line)
    assert r[0] == 1.0 and r[1] < 1e-6
    assert spread_ratios(np.random.default_rng(0).normal(size=(100, 3)))[2] > 0.5


def test_sim3_algebra():
    rng = np.random.default_rng(7)
    A, B = random_sim3(rng), random_sim3(rng)
    x = rng.normal(size=(5, 3))
    np.testing.assert_allclose(A.compose(B).apply_points(x), A.apply_points(B.apply_points(x)), atol=1e-9)
    np.testing.assert_allclose(A.inverse().apply_points(A.apply_points(x)), x, atol=1e-9)
    # a camera pose mapped by a Sim(3) stays rigid and carries its points along
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.random(random_state=3).as_matrix()
    c2w[:3, 3] = rng.normal(size=3)
    p_cam = rng.normal(size=(5, 3))
    p_world = p_cam @ c2w[:3, :3].T + c2w[:3, 3]
    mapped = A.apply_c2w(c2w)
    np.testing.assert_allclose(mapped[:3, :3] @ mapped[:3, :3].T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(A.scale * p_cam @ mapped[:3, :3].T + mapped[:3, 3], A.apply_points(p_world), atol=1e-9)
