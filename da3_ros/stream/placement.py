"""Placing a window in the stream's frame (`align_window`): the Sim(3) from a
window's own frame to the stream frame (see stream.world for the frames).

Window -> stream: a confidence-weighted robust Sim(3) from the frames a window
shares with earlier windows, with fallbacks for degenerate overlap.

Correspondences (window -> world):
  * depth points: the same pixels of a shared keyframe, back-projected with
    this window's depth, pose and intrinsics vs the world points kept from when
    the keyframe was answered; weight sqrt(conf_new * conf_old), residuals
    normalised by depth (errors grow with depth);
  * camera centres of the shared keyframes, each worth `align_centre_weight`
    depth points.
Depth points fix all 7 degrees of freedom even when the cameras do not move
(pure rotation, static camera, one shared frame), which is when camera centres
alone cannot give scale. Without usable depth: rotation from the shared
orientations, scale from the baseline when there is one, else from the depth
of the new frames against the keyframes' points reprojected into them, else
the previous window's scale, each case reported by its status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..geometry.align import DegenerateAlignment, robust_sim3, spread_ratios
from ..geometry.camera import backproject, sample_bilinear, transform_points
from ..geometry.transforms import Sim3, inv_se3, project_to_so3
from .config import StreamConfig
from .result import AlignmentStatus
from .window import WindowEntry

DEPTH_SCALE = AlignmentStatus.ROTATION_DEPTH_SCALE


@dataclass
class Alignment:
    sim3: Sim3
    status: str
    inliers: float = float("nan")
    n_points: int = 0


def _depth_correspondences(shared, c2w_win, K_win, depth, conf, cfg):
    src, dst, w, norm = [], [], [], []
    for j, e in shared:
        if j not in depth or e.sample_uv is None or len(e.sample_uv) == 0:
            continue
        u, v = e.sample_uv[:, 0], e.sample_uv[:, 1]
        d = sample_bilinear(depth[j], u, v)
        c = sample_bilinear(conf[j], u, v)
        ok = np.isfinite(d) & (d > 0) & (c >= cfg.min_confidence)
        if not np.any(ok):
            continue
        x = transform_points(c2w_win[j], backproject(d[ok], u[ok], v[ok], K_win[j]))
        src.append(x)
        dst.append(e.sample_xyz[ok])
        w.append(np.sqrt(c[ok] * e.sample_conf[ok]))
        norm.append(e.sample_depth[ok])
    if not src:
        return None
    return np.concatenate(src), np.concatenate(dst), np.concatenate(w), np.concatenate(norm)


def align_window(
    shared: Sequence[Tuple[int, WindowEntry]],
    new: Sequence[int],
    c2w_win: np.ndarray,
    K_win: np.ndarray,
    depth: Dict[int, np.ndarray],
    conf: Dict[int, np.ndarray],
    pose_conf: np.ndarray,
    cfg: StreamConfig,
    with_scale: bool,
    prev_scale: float,
) -> Alignment:
    """shared: (window index, keyframe entry with world pose and sample);
    new: window indices of the new frames (decoded)."""
    if not shared:
        raise DegenerateAlignment("a window shares no frame with the world")
    corr = _depth_correspondences(shared, c2w_win, K_win, depth, conf, cfg)
    if corr is not None and len(corr[0]) >= cfg.min_align_points:
        src, dst, w, norm = corr
        n_pts = len(src)
        wc = cfg.align_centre_weight * float(np.mean(w))
        src = np.concatenate([src, np.array([c2w_win[j][:3, 3] for j, _ in shared])])
        dst = np.concatenate([dst, np.array([e.c2w_stream[:3, 3] for _, e in shared])])
        w = np.concatenate([w, np.array([wc * pose_conf[j] for j, _ in shared])])
        med = np.array([e.median_depth if np.isfinite(e.median_depth) else np.median(norm) for _, e in shared])
        norm = np.concatenate([norm, med])
        try:
            res = robust_sim3(src, dst, w, norm, with_scale=with_scale)
            spread = spread_ratios(src[:n_pts], w[:n_pts])
            sane = np.isfinite(res.sim3.scale) and res.sim3.scale > 0 and np.all(np.isfinite(res.sim3.t))
            if sane and res.inlier_fraction >= cfg.min_inlier_fraction and spread[1] > 1e-3:
                status = AlignmentStatus.SIM3 if with_scale else AlignmentStatus.SE3_METRIC
                return Alignment(res.sim3, status, res.inlier_fraction, n_pts)
        except DegenerateAlignment:
            pass
    return _align_from_poses(shared, new, c2w_win, K_win, depth, pose_conf, cfg, with_scale, prev_scale)


def _align_from_poses(shared, new, c2w_win, K_win, depth, pose_conf, cfg, with_scale, prev_scale) -> Alignment:
    wts = np.array([max(float(pose_conf[j]), 1e-6) for j, _ in shared])
    R = project_to_so3(sum(wt * (e.c2w_stream[:3, :3] @ c2w_win[j][:3, :3].T) for wt, (j, e) in zip(wts, shared)))
    c_win = np.array([c2w_win[j][:3, 3] for j, _ in shared])
    c_world = np.array([e.c2w_stream[:3, 3] for _, e in shared])
    scene = np.nanmedian([e.median_depth for _, e in shared])
    status = AlignmentStatus.ROTATION_SCALE_KEPT
    scale = 1.0 if not with_scale else prev_scale
    if with_scale and len(shared) >= 2:
        mw, mW = wts @ c_win / wts.sum(), wts @ c_world / wts.sum()
        a, b = (c_win - mw) @ R.T, c_world - mW
        baseline = max(np.linalg.norm(c_world[:, None] - c_world[None], axis=2).max(), 0.0)
        den = float(wts @ np.sum(a * a, axis=1))
        if np.isfinite(scene) and baseline > cfg.min_baseline_ratio * scene and den > 0:
            s = float(wts @ np.sum(a * b, axis=1)) / den
            if s > 0:
                scale, status = s, AlignmentStatus.POSES
    if with_scale and status == AlignmentStatus.ROTATION_SCALE_KEPT:
        s = _scale_from_reprojection(shared, new, c2w_win, K_win, depth, R, c_win, c_world, wts, prev_scale, cfg)
        if s is not None:
            scale, status = s, DEPTH_SCALE
    t = wts @ (c_world - scale * c_win @ R.T) / wts.sum()
    return Alignment(Sim3(scale, R, t), status)


def _scale_from_reprojection(shared, new, c2w_win, K_win, depth, R, c_win, c_world, wts, prev_scale, cfg):
    """No baseline: the new frames sit (almost) where the shared cameras were,
    so their world pose barely depends on the scale. Project the keyframes'
    world points into each new frame and compare with its window depth."""
    t0 = wts @ (c_world - prev_scale * c_win @ R.T) / wts.sum()
    provisional = Sim3(prev_scale, R, t0)
    ratios: List[np.ndarray] = []
    for i in new:
        if i not in depth:
            continue
        d_new = depth[i]
        H, W = d_new.shape
        w2c = inv_se3(provisional.apply_c2w(c2w_win[i]))
        K = K_win[i]
        for _, e in shared:
            if e.sample_xyz is None or len(e.sample_xyz) == 0:
                continue
            x = transform_points(w2c, e.sample_xyz)
            z = x[:, 2]
            front = z > 1e-9
            u = np.round(K[0, 0] * x[front, 0] / z[front] + K[0, 2]).astype(np.int64)
            v = np.round(K[1, 1] * x[front, 1] / z[front] + K[1, 2]).astype(np.int64)
            inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
            dn = d_new[v[inside], u[inside]].astype(np.float64)
            ok = np.isfinite(dn) & (dn > 0)
            ratios.append(z[front][inside][ok] / dn[ok])
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    if len(r) < cfg.min_align_points:
        return None
    s = float(np.median(r))
    return s if np.isfinite(s) and s > 0 else None
