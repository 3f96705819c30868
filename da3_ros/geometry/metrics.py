"""Trajectory and depth metrics (the usual definitions, cross-checked against
`evo` in the tests).

ATE: RMSE of camera-centre differences after aligning the estimate to the
ground truth (Umeyama, SE(3) or Sim(3)). RPE: per pair (i, i+delta), the error
transform E = (gt_i^-1 gt_j)^-1 (est_i^-1 est_j); its translation norm and
rotation angle (evo's definition). Depth: AbsRel = mean |d - d*| / d*, delta1 =
fraction with max(d/d*, d*/d) < 1.25.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .align import umeyama
from .transforms import Sim3, inv_se3, project_to_so3, rotation_angle_deg


@dataclass
class ATEResult:
    rmse: float
    mean: float
    median: float
    max: float
    #: alignment estimate -> ground truth that was applied
    alignment: Sim3
    errors: np.ndarray

    def as_dict(self) -> dict:
        return {"rmse": self.rmse, "mean": self.mean, "median": self.median, "max": self.max, "scale": self.alignment.scale}


def _stats(e: np.ndarray) -> tuple:
    if len(e) == 0:
        return (float("nan"),) * 4
    return float(np.sqrt(np.mean(e**2))), float(np.mean(e)), float(np.median(e)), float(np.max(e))


def ate(est_c2w: np.ndarray, gt_c2w: np.ndarray, align: str = "sim3") -> ATEResult:
    """Absolute trajectory error of camera centres (units of the ground truth).
    align: "sim3" (scale, rotation, translation), "se3", or "none"."""
    est = np.asarray(est_c2w, dtype=np.float64)
    gt = np.asarray(gt_c2w, dtype=np.float64)
    if est.shape != gt.shape:
        raise ValueError(f"trajectories differ in shape: {est.shape} vs {gt.shape}")
    pe, pg = est[:, :3, 3], gt[:, :3, 3]
    if align == "none":
        sim = Sim3.identity()
    elif align in ("se3", "sim3"):
        sim = umeyama(pe, pg, with_scale=(align == "sim3"))
    else:
        raise ValueError(f"unknown alignment {align!r}")
    e = np.linalg.norm(sim.apply_points(pe) - pg, axis=1)
    return ATEResult(*_stats(e), alignment=sim, errors=e)


@dataclass
class RPEResult:
    trans_rmse: float
    trans_mean: float
    rot_rmse_deg: float
    rot_mean_deg: float
    delta: int
    trans_errors: np.ndarray
    rot_errors_deg: np.ndarray

    def as_dict(self) -> dict:
        return {
            "trans_rmse": self.trans_rmse,
            "trans_mean": self.trans_mean,
            "rot_rmse_deg": self.rot_rmse_deg,
            "rot_mean_deg": self.rot_mean_deg,
            "delta": self.delta,
        }


def rpe(est_c2w: np.ndarray, gt_c2w: np.ndarray, delta: int = 1, scale: float = 1.0) -> RPEResult:
    """Relative pose error over every pair (i, i+delta), delta in frames (evo's
    all_pairs=True). `scale` multiplies the estimate's translations first (e.g.
    the Sim(3) scale from ATE, for a trajectory in arbitrary units)."""
    est = np.array(est_c2w, dtype=np.float64)
    gt = np.asarray(gt_c2w, dtype=np.float64)
    if est.shape != gt.shape:
        raise ValueError(f"trajectories differ in shape: {est.shape} vs {gt.shape}")
    est[:, :3, 3] *= scale
    n = len(est) - delta
    if n <= 0:
        empty = np.zeros(0)
        return RPEResult(float("nan"), float("nan"), float("nan"), float("nan"), delta, empty, empty)
    rel_e = inv_se3(est[:n]) @ est[delta:]
    rel_g = inv_se3(gt[:n]) @ gt[delta:]
    E = inv_se3(rel_g) @ rel_e
    te = np.linalg.norm(E[:, :3, 3], axis=1)
    re = rotation_angle_deg(E[:, :3, :3])
    return RPEResult(
        float(np.sqrt(np.mean(te**2))), float(np.mean(te)),
        float(np.sqrt(np.mean(re**2))), float(np.mean(re)), delta, te, re,
    )


@dataclass
class DepthResult:
    abs_rel: float
    delta1: float
    rmse: float
    n_pixels: int

    def as_dict(self) -> dict:
        return {"abs_rel": self.abs_rel, "delta1": self.delta1, "rmse": self.rmse, "n_pixels": self.n_pixels}


def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None, scale: float = 1.0) -> DepthResult:
    """Depth errors over pixels valid in both maps (finite, > 0) and `mask`.
    `scale` multiplies the prediction first (a relative-depth pipeline's unit to
    the ground truth's metres)."""
    p = np.asarray(pred, dtype=np.float64) * scale
    g = np.asarray(gt, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(g) & (p > 0) & (g > 0)
    if mask is not None:
        ok &= mask
    p, g = p[ok], g[ok]
    if len(g) == 0:
        return DepthResult(float("nan"), float("nan"), float("nan"), 0)
    ratio = np.maximum(p / g, g / p)
    return DepthResult(
        float(np.mean(np.abs(p - g) / g)),
        float(np.mean(ratio < 1.25)),
        float(np.sqrt(np.mean((p - g) ** 2))),
        int(len(g)),
    )


def rotation_error(est_c2w: np.ndarray, gt_c2w: np.ndarray) -> Tuple[float, float]:
    """Absolute orientation error (rmse, max) in degrees after the best global
    rotation (chordal mean of gt_i est_i^T); independent of positions, so it
    also works for a camera that only rotates (where ATE is empty)."""
    est = np.asarray(est_c2w, dtype=np.float64)
    gt = np.asarray(gt_c2w, dtype=np.float64)
    R = project_to_so3(np.einsum("nij,nkj->ik", gt[:, :3, :3], est[:, :3, :3]))
    err = rotation_angle_deg(np.einsum("nji,jk,nkl->nil", gt[:, :3, :3], R, est[:, :3, :3]))
    return float(np.sqrt(np.mean(err**2))), float(np.max(err))
