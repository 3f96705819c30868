"""Helpers for the streaming tests: run a sequence through a Streamer and
score it against the ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

from da3_ros.geometry import ate, depth_metrics, rotation_error, rpe
from da3_ros.stream import StreamConfig, Streamer, StreamResult


def run(model, seq, cfg: StreamConfig, **frame_kw) -> "tuple[Streamer, List[StreamResult]]":
    st = Streamer(model, cfg)
    out: List[StreamResult] = []
    for f in seq.frames(**frame_kw):
        out += st.push(f)
    out += st.flush()
    return st, out


@dataclass
class Score:
    ate_rmse: float  # metres, after Sim(3) (or SE(3)) alignment
    ate_max: float
    rot_rmse_deg: float
    rpe_trans_rmse: float  # metres, per frame
    rpe_rot_rmse_deg: float
    abs_rel: float
    delta1: float
    #: world units -> metres, from the depth maps (works without any baseline)
    scale: float
    #: spread (max-min)/median of the per-frame depth scale to ground truth
    scale_spread: float
    est_c2w: np.ndarray
    gt_c2w: np.ndarray

    def line(self, name: str) -> str:
        return (f"{name}: ATE {self.ate_rmse * 1000:.3g} mm (max {self.ate_max * 1000:.3g}), rot {self.rot_rmse_deg:.3g} deg, "
                f"RPE {self.rpe_trans_rmse * 1000:.3g} mm / {self.rpe_rot_rmse_deg:.3g} deg, AbsRel {self.abs_rel:.2e}, "
                f"delta1 {self.delta1:.4f}, scale spread {self.scale_spread:.2e}")


def score(seq, results: List[StreamResult], align: str = "sim3") -> Score:
    idx = np.array([r.index for r in results])
    est = np.array([r.c2w for r in results])
    gt = seq.c2w[idx]
    # per-frame scale world units -> metres from the depth (median over pixels)
    per_frame = np.array([np.median(seq.depth[i].astype(np.float64) / r.depth.astype(np.float64)) for i, r in zip(idx, results)])
    scale = float(np.median(per_frame))
    est_m = est.copy()
    est_m[:, :3, 3] *= scale
    # positions: Sim(3)/SE(3) after putting the estimate in metres with the depth scale
    # (Umeyama's own scale is undefined when the camera only rotates)
    a = ate(est_m, gt, "se3" if align in ("sim3", "se3") else align)
    if align == "sim3" and np.ptp(gt[:, :3, 3], axis=0).max() > 0.5:
        a = ate(est, gt, "sim3")
    rot, _ = rotation_error(est, gt)
    r = rpe(est_m, gt, 1)
    dms = [depth_metrics(res.depth, seq.depth[i], scale=scale) for i, res in zip(idx, results)]
    return Score(
        a.rmse, a.max, rot, r.trans_rmse, r.rot_rmse_deg,
        float(np.mean([d.abs_rel for d in dms])), float(np.mean([d.delta1 for d in dms])),
        scale, float(np.ptp(per_frame) / np.median(per_frame)), est_m, gt,
    )
