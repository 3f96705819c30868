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


class _MomentFit:
    """Weighted Umeyama from the weighted moments of fixed correspondences: one
    (n,6) matrix product per fit instead of re-centring the point sets, so an
    IRLS iteration costs a few passes over the points. The points are centred
    once on their plain means, which keeps the moment form well conditioned."""

    def __init__(self, src: np.ndarray, dst: np.ndarray, with_scale: bool):
        self.c_s, self.c_d = src.mean(axis=0), dst.mean(axis=0)
        self.A = np.concatenate([src - self.c_s, dst - self.c_d], axis=1)  # (n,6): src | dst, centred
        self.xs, self.xd = self.A[:, :3], self.A[:, 3:]
        self.sq_s = np.einsum("ij,ij->i", self.xs, self.xs)
        self.with_scale = with_scale

    def fit(self, w: np.ndarray):
        """(scale, R, t) in the centred coordinates: xd ~ scale R xs + t."""
        wsum = w.sum()
        if not wsum > 0:
            raise DegenerateAlignment("no weighted correspondences")
        mu = w @ self.A / wsum
        mu_s, mu_d = mu[:3], mu[3:]
        cov = (self.xd.T * w) @ self.xs / wsum - np.outer(mu_d, mu_s)
        U, D, Vt = np.linalg.svd(cov)
        S = np.ones(3)
        if np.linalg.det(U) * np.linalg.det(Vt) < 0:
            S[2] = -1.0  # reflection -> closest proper rotation
        R = (U * S) @ Vt
        if self.with_scale:
            var_s = float(w @ self.sq_s / wsum - mu_s @ mu_s)
            if var_s <= 1e-300:
                raise DegenerateAlignment("source points coincide: scale undetermined")
            scale = float(D @ S / var_s)
        else:
            scale = 1.0
        return scale, R, mu_d - scale * R @ mu_s

    def residuals(self, scale: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
        e = self.xd - self.xs @ (scale * R).T - t
        return np.sqrt(np.einsum("ij,ij->i", e, e))

    def sim3(self, scale: float, R: np.ndarray, t: np.ndarray) -> Sim3:
        return Sim3(scale, R, self.c_d + t - scale * R @ self.c_s)


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
    Deterministic; each iteration is one weighted Umeyama on precomputed
    moments (`_MomentFit`).
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 3)
    if src.shape != dst.shape:
        raise ValueError(f"src {src.shape} and dst {dst.shape} differ")
    if len(src) == 0:
        raise DegenerateAlignment("no weighted correspondences")
    prior = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    inv_norm = 1.0 / (np.ones(len(src)) if residual_scale is None
                      else np.maximum(np.asarray(residual_scale, dtype=np.float64).reshape(-1), 1e-12))
    fit = _MomentFit(src, dst, with_scale)
    trusted = prior > 0
    all_trusted = bool(np.all(trusted))
    w = prior.copy()
    sim = fit.fit(w)
    delta = min_delta
    it = 0
    for it in range(1, max_iters + 1):
        r = fit.residuals(*sim) * inv_norm
        rt = r if all_trusted else r[trusted]
        sigma = 1.4826 * np.median(rt) if len(rt) else 0.0
        delta = max(huber_k * sigma, min_delta)
        w = prior * np.minimum(1.0, delta / np.maximum(r, 1e-300))  # Huber: 1 inside delta, delta/r beyond
        new = fit.fit(w)
        t_old, t_new = fit.sim3(*sim).t, fit.sim3(*new).t
        change = (
            abs(np.log(new[0] / sim[0]))
            + np.linalg.norm(new[1] - sim[1])
            + np.linalg.norm(t_new - t_old) / (np.linalg.norm(t_old) + 1.0)
        )
        sim = new
        if change < tol:
            break
    r = fit.residuals(*sim) * inv_norm
    sigma = 1.4826 * np.median(r)
    inliers = float(np.mean(r <= max(3.0 * sigma, min_delta)))
    return RobustAlignment(fit.sim3(*sim), w, r, delta, inliers, it)
