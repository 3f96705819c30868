"""Trajectory and depth metrics (the usual definitions, cross-checked against
`evo` in the tests).

ATE: RMSE of camera-centre differences after aligning the estimate to the
ground truth (Umeyama, SE(3) or Sim(3)). RPE: per pair (i, i+delta), the error
transform E = (gt_i^-1 gt_j)^-1 (est_i^-1 est_j); its translation norm and
rotation angle (evo's definition). Relative-pose AUC: per frame pair, the larger
of the relative rotation error and the angle between the relative translation
directions; the area under its accuracy curve up to a threshold (the VGGT / DA3
pose benchmark). Depth: AbsRel = mean |d - d*| / d*, SqRel = mean (d - d*)^2 / d*,
RMSE, delta_k = fraction with max(d/d*, d*/d) < 1.25^k, over the pixels whose
ground truth d* is finite and > 0 and whose prediction d is finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

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


#: delta thresholds of the depth accuracy metrics (1.25, 1.25^2, 1.25^3)
DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)


@dataclass
class DepthResult:
    """Depth errors over `n_pixels` valid pixels; rmse in the ground truth's unit."""

    abs_rel: float
    sq_rel: float
    rmse: float
    delta1: float
    delta2: float
    delta3: float
    n_pixels: int

    def as_dict(self) -> dict:
        return {"abs_rel": self.abs_rel, "sq_rel": self.sq_rel, "rmse": self.rmse, "delta1": self.delta1,
                "delta2": self.delta2, "delta3": self.delta3, "n_pixels": self.n_pixels}


def depth_valid_mask(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Pixels a depth metric counts: ground truth finite and > 0, prediction finite."""
    return np.isfinite(gt) & (gt > 0) & np.isfinite(pred)


class DepthErrorSums:
    """Depth metrics accumulated over many frames in constant memory: add()
    each frame's valid pixels, result() pools them (every pixel weighs the
    same, the usual per-sequence definition)."""

    def __init__(self):
        self.n = 0
        self._abs_rel = self._sq_rel = self._sq = 0.0
        self._within = np.zeros(len(DELTA_THRESHOLDS), np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> DepthResult:
        """Add matching 1-D arrays of valid pixels (see depth_valid_mask); returns this
        frame's own result. A prediction <= 0 counts as outside every delta threshold."""
        p = np.asarray(pred, dtype=np.float64).ravel()
        g = np.asarray(gt, dtype=np.float64).ravel()
        diff = p - g
        abs_rel = float(np.sum(np.abs(diff) / g))
        sq_rel = float(np.sum(diff**2 / g))
        sq = float(np.sum(diff**2))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(p > 0, np.maximum(p / g, g / p), np.inf)
        within = np.array([np.count_nonzero(ratio < t) for t in DELTA_THRESHOLDS], np.int64)
        self.n += len(g)
        self._abs_rel += abs_rel
        self._sq_rel += sq_rel
        self._sq += sq
        self._within += within
        return _depth_result(len(g), abs_rel, sq_rel, sq, within)

    def result(self) -> DepthResult:
        return _depth_result(self.n, self._abs_rel, self._sq_rel, self._sq, self._within)


def _depth_result(n: int, abs_rel: float, sq_rel: float, sq: float, within: np.ndarray) -> DepthResult:
    if n == 0:
        nan = float("nan")
        return DepthResult(nan, nan, nan, nan, nan, nan, 0)
    d = within / n
    return DepthResult(abs_rel / n, sq_rel / n, float(np.sqrt(sq / n)), float(d[0]), float(d[1]), float(d[2]), int(n))


def depth_metrics(pred: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None, scale: float = 1.0) -> DepthResult:
    """Depth errors over the valid pixels (depth_valid_mask) inside `mask`.
    `scale` multiplies the prediction first (a relative-depth pipeline's unit to
    the ground truth's metres)."""
    p = np.asarray(pred, dtype=np.float64) * scale
    g = np.asarray(gt, dtype=np.float64)
    ok = depth_valid_mask(p, g)
    if mask is not None:
        ok &= mask
    sums = DepthErrorSums()
    sums.add(p[ok], g[ok])
    return sums.result()


def depth_at_resolution(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """`depth` (h, w) sampled at (height, width) by nearest pixel centre (no
    blending across depth edges); the array itself when the size already matches."""
    depth = np.asarray(depth)
    h, w = depth.shape
    if (h, w) == (height, width):
        return depth
    rows = np.clip(((np.arange(height) + 0.5) * h / height).astype(np.int64), 0, h - 1)
    cols = np.clip(((np.arange(width) + 0.5) * w / width).astype(np.int64), 0, w - 1)
    return depth[rows[:, None], cols[None, :]]


class StreamingMedian:
    """Exact median (numpy's: the mean of the two middle values for an even
    count) of values seen in several passes over the same data, in bounded
    memory: for data too large to hold, e.g. every valid pixel of a long
    sequence.

    Feed every (finite) value of the data set with feed(), in any chunks and
    order, then call end_pass(); repeat while it returns False, then read
    `value`. Pass 1 counts (and keeps the values when there are at most
    `max_keep`: then it is done). Each later pass histograms the value range
    known to hold the lower middle order statistic and narrows it to that
    bin's smallest and largest value, until one value is left or at most
    `max_keep` values lie in it, which the next pass keeps and sorts. The upper
    middle statistic is the same value or the next larger one. Usually 2-3 passes.
    """

    def __init__(self, max_keep: int = 1 << 22, bins: int = 4096):
        self.max_keep, self.bins = int(max_keep), int(bins)
        self.n = 0
        self.passes = 0
        self.value = float("nan")
        self.done = False
        self._mode = "count"
        self._lo, self._hi = np.inf, -np.inf  # inclusive range holding the lower middle value
        self._kept: Optional[List[np.ndarray]] = []
        self._kept_n = 0
        self._new_pass()

    def _new_pass(self) -> None:
        self._below = 0  # values < lo seen this pass
        self._above_min = np.inf  # smallest value > hi seen this pass
        if self._mode == "histogram":
            self._edges = np.linspace(self._lo, self._hi, self.bins + 1)
            self._hist = np.zeros(self.bins, np.int64)
            self._bmin = np.full(self.bins, np.inf)
            self._bmax = np.full(self.bins, -np.inf)
        elif self._mode in ("collect", "distinct"):
            self._kept, self._counts = [], None

    def feed(self, x: np.ndarray) -> None:
        if self.done:
            return
        x = np.asarray(x, dtype=np.float64).ravel()
        if len(x) == 0:
            return
        if self._mode == "count":
            self.n += len(x)
            self._lo, self._hi = min(self._lo, float(x.min())), max(self._hi, float(x.max()))
            if self._kept is not None:
                self._kept.append(x.copy())
                self._kept_n += len(x)
                if self._kept_n > self.max_keep:
                    self._kept = None  # too many to hold: narrow down in later passes
            return
        self._below += int(np.count_nonzero(x < self._lo))
        above = x[x > self._hi]
        if len(above):
            self._above_min = min(self._above_min, float(above.min()))
        inside = x[(x >= self._lo) & (x <= self._hi)]
        if self._mode == "histogram":
            b = self._bin(inside)
            self._hist += np.bincount(b, minlength=self.bins)
            np.minimum.at(self._bmin, b, inside)
            np.maximum.at(self._bmax, b, inside)
        elif self._mode == "collect":
            self._kept.append(inside)
        else:  # distinct: (value, count) pairs; the range holds few distinct floats
            u, c = np.unique(inside, return_counts=True)
            if self._counts is not None:
                u, inv = np.unique(np.concatenate([self._counts[0], u]), return_inverse=True)
                c = np.bincount(inv, weights=np.concatenate([self._counts[1], c])).astype(np.int64)
            self._counts = (u, c)

    def _bin(self, x: np.ndarray) -> np.ndarray:
        """Bin of each value: edges[b] <= x < edges[b + 1] (the last bin closed),
        by arithmetic, then corrected against the edges for rounding."""
        e = self._edges
        with np.errstate(over="ignore"):
            per_unit = self.bins / (self._hi - self._lo)
        if not np.isfinite(per_unit):  # a range of a few subnormals: search the edges
            return np.clip(np.searchsorted(e, x, side="right") - 1, 0, self.bins - 1)
        b = np.clip(((x - self._lo) * per_unit).astype(np.int64), 0, self.bins - 1)
        b -= (x < e[b]) & (b > 0)
        b += (x >= e[b + 1]) & (b < self.bins - 1)
        return b

    def end_pass(self) -> bool:
        """Close a pass over the data; True when the median is known."""
        if self.done:
            return True
        self.passes += 1
        k1, k2 = (self.n - 1) // 2, self.n // 2  # the middle order statistics, 0-based
        if self._mode == "count":
            if self.n == 0:
                return self._finish(float("nan"))
            if self._kept is not None:
                return self._finish(float(np.median(np.concatenate(self._kept))))
            if self._lo == self._hi:
                return self._finish(self._lo)
            self._mode = "histogram"
        elif self._mode == "histogram":
            cum = self._below + np.cumsum(self._hist)  # values below each bin's end
            b = int(np.searchsorted(cum, k1, side="right"))
            lo, hi = float(self._bmin[b]), float(self._bmax[b])
            if lo == hi:  # one value holds the lower middle statistic
                if cum[b] > k2:
                    return self._finish(lo)
                later = self._bmin[b + 1:][self._hist[b + 1:] > 0]
                return self._finish(0.5 * (lo + min(float(later.min()) if len(later) else np.inf, self._above_min)))
            if (lo, hi) == (self._lo, self._hi):
                self._mode = "distinct"  # no narrower in float64: count the few distinct values
            elif self._hist[b] <= self.max_keep:
                self._mode = "collect"
            self._lo, self._hi = lo, hi
        else:
            if self._mode == "collect":
                v = np.sort(np.concatenate(self._kept)) if self._kept else np.zeros(0)
                u, c = v, np.ones(len(v), np.int64)
            else:
                u, c = self._counts if self._counts is not None else (np.zeros(0), np.zeros(0, np.int64))
            cum = self._below + np.cumsum(c)
            j1, j2 = int(np.searchsorted(cum, k1, side="right")), int(np.searchsorted(cum, k2, side="right"))
            x2 = float(u[j2]) if j2 < len(u) else self._above_min
            return self._finish(0.5 * (float(u[j1]) + x2))
        self._new_pass()
        return False

    def _finish(self, value: float) -> bool:
        self.value, self.done, self._kept = float(value), True, None
        return True


# ---------------------------------------------------------------- relative pose AUC

#: thresholds (degrees) of the relative-pose AUC the DA3 paper reports
AUC_THRESHOLDS_DEG = (3, 30)


def window_pairs(frame_numbers: Sequence[int], window: int) -> Tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of the entries whose frame numbers differ by
    less than `window` (the frame pairs one sliding window can hold)."""
    f = np.asarray(frame_numbers, dtype=np.int64)
    ii, jj = [], []
    for i in range(len(f)):
        j = np.arange(i + 1, len(f))
        j = j[(f[j] - f[i] < window) & (f[j] > f[i])]
        ii.append(np.full(len(j), i))
        jj.append(j)
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)


def relative_pose_errors(est_c2w: np.ndarray, gt_c2w: np.ndarray, i: np.ndarray, j: np.ndarray,
                         eps: float = 1e-12) -> Tuple[np.ndarray, np.ndarray]:
    """Per pair: (rotation error, translation direction error), degrees.

    Relative pose of camera j in camera i: P = c2w_i^-1 c2w_j (estimate and
    ground truth alike). Rotation error: angle of R_gt^T R_est. Translation
    error: angle between the two relative translations as undirected lines,
    in [0, 90] (the benchmark's sign ambiguity); a translation shorter than
    `eps` has no direction and scores 90. Scale-free: no alignment needed.
    """
    est = np.asarray(est_c2w, dtype=np.float64)
    gt = np.asarray(gt_c2w, dtype=np.float64)
    rel_e = inv_se3(est[i]) @ est[j]
    rel_g = inv_se3(gt[i]) @ gt[j]
    rot = rotation_angle_deg(np.swapaxes(rel_g[:, :3, :3], -1, -2) @ rel_e[:, :3, :3])
    te, tg = rel_e[:, :3, 3], rel_g[:, :3, 3]
    ne, ng = np.linalg.norm(te, axis=1), np.linalg.norm(tg, axis=1)
    ok = (ne > eps) & (ng > eps)
    cos = np.zeros(len(te))
    cos[ok] = np.abs(np.sum(te[ok] * tg[ok], axis=1)) / (ne[ok] * ng[ok])
    trans = np.degrees(np.arccos(np.clip(cos, 0.0, 1.0)))
    return rot, trans


def pose_auc(rot_err_deg: np.ndarray, trans_err_deg: np.ndarray, threshold_deg: int) -> float:
    """AUC of the relative-pose accuracy up to `threshold_deg` (an integer):
    the mean over t = 1, 2, ..., threshold of the fraction of pairs whose
    max(rotation error, translation error) is below t degrees (the VGGT / DA3
    benchmark's 1-degree steps). 1 = every pair under 1 degree; nan: no pairs."""
    err = np.maximum(np.asarray(rot_err_deg, np.float64), np.asarray(trans_err_deg, np.float64))
    if len(err) == 0:
        return float("nan")
    t = np.arange(1, int(threshold_deg) + 1, dtype=np.float64)
    return float(np.mean([(err < x).mean() for x in t]))


def rotation_error(est_c2w: np.ndarray, gt_c2w: np.ndarray) -> Tuple[float, float]:
    """Absolute orientation error (rmse, max) in degrees after the best global
    rotation (chordal mean of gt_i est_i^T); independent of positions, so it
    also works for a camera that only rotates (where ATE is empty)."""
    est = np.asarray(est_c2w, dtype=np.float64)
    gt = np.asarray(gt_c2w, dtype=np.float64)
    R = project_to_so3(np.einsum("nij,nkj->ik", gt[:, :3, :3], est[:, :3, :3]))
    err = rotation_angle_deg(np.einsum("nji,jk,nkl->nil", gt[:, :3, :3], R, est[:, :3, :3]))
    return float(np.sqrt(np.mean(err**2))), float(np.max(err))
