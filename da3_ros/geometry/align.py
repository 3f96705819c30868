"""Point-set alignment: weighted Umeyama and a robust (IRLS, Huber) Sim(3).

Used to map each new window of the stream into the world frame (the frames a
window shares with earlier windows give 3D-3D correspondences: their depth
point maps and camera centres), and by the metrics (ATE after alignment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .transforms import Sim3


class DegenerateAlignment(ValueError):
    """The correspondences do not determine the requested transform."""


def umeyama(
    src: np.ndarray,
    dst: np.ndarray,
    weights: Optional[np.ndarray] = None,
    with_scale: bool = True,
) -> Sim3:
    """Least-squares Sim(3) (or SE(3) when with_scale=False) with dst ~ s R src + t,
    minimising sum_i w_i |dst_i - (s R src_i + t)|^2 (Umeyama 1991)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} differ")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    wsum = w.sum()
    if len(src) == 0 or not wsum > 0:
        raise DegenerateAlignment("no weighted correspondences")
    mu_s = w @ src / wsum
    mu_d = w @ dst / wsum
    xs = src - mu_s
    xd = dst - mu_d
    cov = (xd * w[:, None]).T @ xs / wsum
    U, D, Vt = np.linalg.svd(cov)
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0  # reflection -> closest proper rotation
    R = U @ S @ Vt
    if with_scale:
        var_s = float(w @ np.sum(xs * xs, axis=1) / wsum)
        if var_s <= 1e-300:
            raise DegenerateAlignment("source points coincide: scale undetermined")
        scale = float(np.sum(D * np.diag(S)) / var_s)
    else:
        scale = 1.0
    t = mu_d - scale * R @ mu_s
    return Sim3(scale, R, t)


def spread_ratios(x: np.ndarray, weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Weighted principal standard deviations of a point set, largest first, as
    ratios to the largest (1, r1, r2). r1 ~ 0: collinear (rotation about the line
    undetermined); all ~ 0: one point."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(x) == 0 or w.sum() <= 0:
        return np.zeros(3)
    mu = w @ x / w.sum()
    xc = x - mu
    cov = (xc * w[:, None]).T @ xc / w.sum()
    ev = np.sqrt(np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None))
    if ev[0] <= 0:
        return np.zeros(3)
    return ev / ev[0]


@dataclass
class RobustAlignment:
    sim3: Sim3
    #: final per-correspondence weights (prior weight x Huber weight)
    weights: np.ndarray
    #: residuals |dst - T(src)| / residual_scale at the solution
    residuals: np.ndarray
    #: Huber threshold used in the last iteration (normalised residual units)
    huber_delta: float
    #: fraction of correspondences with a normalised residual <= 3 robust sigmas
    inlier_fraction: float
    iterations: int


def robust_sim3(
    src: np.ndarray,
    dst: np.ndarray,
    weights: Optional[np.ndarray] = None,
    residual_scale: Optional[np.ndarray] = None,
    with_scale: bool = True,
    huber_k: float = 1.345,
    min_delta: float = 1e-6,
    max_iters: int = 20,
    tol: float = 1e-10,
) -> RobustAlignment:
    """Confidence-weighted Sim(3) by iteratively re-weighted least squares with
    Huber weights.

    weights: prior trust per correspondence (e.g. the depth confidences).
    residual_scale: per-correspondence normaliser (e.g. the point's depth), so
        that a far point's larger error does not count as an outlier.
    The Huber threshold is huber_k robust standard deviations (1.4826 MAD of the
    normalised residuals), floored at min_delta so exact data stays exact.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    prior = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    norm = np.ones(len(src)) if residual_scale is None else np.maximum(np.asarray(residual_scale, dtype=np.float64).reshape(-1), 1e-12)
    w = prior.copy()
    sim = umeyama(src, dst, w, with_scale)
    delta = min_delta
    it = 0
    for it in range(1, max_iters + 1):
        r = np.linalg.norm(dst - sim.apply_points(src), axis=1) / norm
        sigma = 1.4826 * np.median(r[prior > 0]) if np.any(prior > 0) else 0.0
        delta = max(huber_k * sigma, min_delta)
        huber = np.where(r <= delta, 1.0, delta / np.maximum(r, 1e-300))
        w = prior * huber
        new = umeyama(src, dst, w, with_scale)
        change = (
            abs(np.log(new.scale / sim.scale))
            + np.linalg.norm(new.R - sim.R)
            + np.linalg.norm(new.t - sim.t) / (np.linalg.norm(sim.t) + 1.0)
        )
        sim = new
        if change < tol:
            break
    r = np.linalg.norm(dst - sim.apply_points(src), axis=1) / norm
    sigma = 1.4826 * np.median(r) if len(r) else 0.0
    inliers = float(np.mean(r <= max(3.0 * sigma, min_delta))) if len(r) else 0.0
    return RobustAlignment(sim, w, r, delta, inliers, it)
