"""The rig's metric scale from what two calibrated cameras both see.

A relative model's depth of camera a (stream units) and the calibrated pose of
camera b relative to a (metres, from /tf_static) predict where each pixel of a
appears in b, and that prediction depends on one unknown: metres per stream
unit `m`. For a point X_a = m * depth * K_a^-1 p of a, b sees
K_b (R_ba X_a + t_ba) ~ K_b (R_ba depth K_a^-1 p + t_ba / m): the parallax is
linear in u = 1/m (units per metre). `overlap_scale` searches u by comparing
the two images (locally normalised, so gain and offset differences between the
cameras do not matter) at textured pixels of a. It does not rest on the model's
poses, only on its depth (relative depth errors of a few per cent move m by as
much) and the calibration: this is how a short stereo baseline, which a small
model cannot resolve in its poses, still fixes the scale. Cameras that see
nothing in common give no (confident) answer. Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..geometry.camera import sample_bilinear
from ..geometry.transforms import inv_se3
from .rig_scale import MAD_TO_SIGMA, RigScale

#: the images are compared at most this wide (pixels): enough parallax resolution
#: for a 5-cm baseline at a few metres, little host time
WORK_WIDTH = 320
#: textured pixels of camera a compared per rig frame
N_SAMPLES = 600
#: candidate u values (units per metre) of the coarse search, from zero parallax to
#: half the image's width at the median depth
N_CANDIDATES = 160
#: a normalised-intensity difference above this counts as this (occlusion, specularity)
TRUNCATION = 1.5
#: an answer counts when its cost is below CONTRAST x the median cost over all
#: candidates (a clear, single minimum) ...
CONTRAST = 0.75
#: ... and at least this share of the samples lands inside b at the answer
MIN_OVERLAP = 0.3
#: half-width (pixels) of the box that normalises intensity locally
_BOX = 3


@dataclass(frozen=True)
class OverlapScale:
    """One rig frame's answer for a pair of cameras (a, b)."""

    #: metres per stream unit
    metres_per_unit: float
    #: cost at the answer over the median cost of all candidates (lower: clearer)
    contrast: float
    #: share of a's samples that land in b at the answer
    overlap: float


def _grey(image: np.ndarray, step: int) -> np.ndarray:
    g = image[::step, ::step].astype(np.float32) @ np.float32([0.299, 0.587, 0.114])
    return g


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 box, edges replicated (integral image: O(pixels))."""
    p = np.pad(x, r + 1, mode="edge").astype(np.float64)
    c = p.cumsum(0).cumsum(1)
    k = 2 * r + 1
    s = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    return (s / (k * k))[: x.shape[0], : x.shape[1]].astype(np.float32)


def normalise(grey: np.ndarray) -> np.ndarray:
    """Intensity minus its local mean over the local standard deviation: what two
    cameras with different gain and offset agree on."""
    mu = _box_mean(grey, _BOX)
    var = np.maximum(_box_mean(grey * grey, _BOX) - mu * mu, 0.0)
    return (grey - mu) / (np.sqrt(var) + 2.0)  # +2 grey levels: flat regions stay near 0, not noise


def _samples(norm_a: np.ndarray, depth: np.ndarray, rng: np.random.Generator):
    """Pixels of a (work resolution) with texture and a valid depth: the
    strongest gradients, N_SAMPLES of them at most."""
    gy, gx = np.gradient(norm_a)
    g = np.hypot(gx, gy)
    ok = np.isfinite(depth) & (depth > 0)
    ok[:2], ok[-2:], ok[:, :2], ok[:, -2:] = False, False, False, False
    idx = np.flatnonzero(ok.ravel())
    if idx.size < 50:
        return None
    strong = idx[g.ravel()[idx] >= np.quantile(g.ravel()[idx], 0.7)]
    pick = strong if strong.size <= N_SAMPLES else rng.choice(strong, N_SAMPLES, replace=False)
    v, u = np.divmod(pick, norm_a.shape[1])
    return u.astype(np.float64), v.astype(np.float64)


def _cost(u_vals, P, t, K_b, norm_b, ref, nearest: bool = False):
    """Truncated mean |difference| for each u in u_vals (all at once: C x N), and
    the share of samples inside b; `nearest`: b's nearest pixel (the coarse
    search: 4x cheaper), else bilinear."""
    h, w = norm_b.shape
    Xb = P[None] + np.asarray(u_vals)[:, None, None] * t[None, :, None]  # (C, 3, N): parallax linear in u
    z = Xb[:, 2]
    front = z > 1e-6
    zs = np.where(front, z, 1.0)
    x = (K_b[0, 0] * Xb[:, 0] + K_b[0, 2] * z) / zs
    y = (K_b[1, 1] * Xb[:, 1] + K_b[1, 2] * z) / zs
    ok = front & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    if nearest:
        seen = norm_b[np.clip(np.rint(y), 0, h - 1).astype(np.intp), np.clip(np.rint(x), 0, w - 1).astype(np.intp)]
    else:
        seen = sample_bilinear(norm_b, x, y)  # NaN outside b: `ok` excludes those
    d = np.where(ok, np.minimum(np.abs(seen - ref[None]), TRUNCATION), TRUNCATION)
    return d.mean(axis=1), ok.mean(axis=1)


def overlap_scale(image_a: np.ndarray, depth_a: np.ndarray, K_a: np.ndarray, image_b: np.ndarray,
                  K_b: np.ndarray, T_b_a: np.ndarray, seed: int = 0) -> Optional[OverlapScale]:
    """Metres per stream unit from one rig frame of cameras a and b (module
    docstring), or None without a clear answer.

    image_a, image_b: HxWx3 uint8 (their own sizes); depth_a: HxW of a, stream
    units (non-finite or <= 0: unknown); K_a, K_b: 3x3 pixels at native size;
    T_b_a: 4x4 maps a's optical coordinates into b's, metres (the calibration)."""
    t_ba = np.asarray(T_b_a, np.float64)[:3, 3]
    if np.linalg.norm(t_ba) < 1e-6:
        return None  # no baseline: no parallax to measure
    step_a = max(1, int(np.ceil(image_a.shape[1] / WORK_WIDTH)))
    step_b = max(1, int(np.ceil(image_b.shape[1] / WORK_WIDTH)))
    norm_a, norm_b = normalise(_grey(image_a, step_a)), normalise(_grey(image_b, step_b))
    d = np.asarray(depth_a, np.float64)[::step_a, ::step_a][: norm_a.shape[0], : norm_a.shape[1]]
    picked = _samples(norm_a, d, np.random.default_rng(seed))
    if picked is None:
        return None
    x, y = picked
    z = d[y.astype(np.int64), x.astype(np.int64)]
    # a's rays through the native pixels of the samples, times depth: a's points (units)
    xn, yn = x * step_a, y * step_a  # the work image takes every step-th native pixel
    Ka = np.asarray(K_a, np.float64)
    rays = np.stack([(xn - Ka[0, 2]) / Ka[0, 0], (yn - Ka[1, 2]) / Ka[1, 1], np.ones_like(xn)])
    P = np.asarray(T_b_a, np.float64)[:3, :3] @ (rays * z)
    Kb = np.asarray(K_b, np.float64).copy()
    Kb[:2] /= step_b
    ref = norm_a[y.astype(np.int64), x.astype(np.int64)]
    # u from 0 to the u that moves a point at the median depth by half of b's width
    f_b = Kb[0, 0]
    u_max = 0.5 * norm_b.shape[1] * float(np.median(z)) / (f_b * np.linalg.norm(t_ba))
    grid = np.linspace(0.0, u_max, N_CANDIDATES + 1)[1:]
    costs, inside = _cost(grid, P, t_ba, Kb, norm_b, ref, nearest=True)
    i = int(np.argmin(costs))
    if i == 0 or i == len(grid) - 1:
        return None  # at an end of the search: no parallax found, or beyond the image
    # refine between the neighbours, then a parabola through the finest three
    du = grid[1] - grid[0]
    fine = np.linspace(grid[i] - du, grid[i] + du, 21)
    fc, fin = _cost(fine, P, t_ba, Kb, norm_b, ref)
    j = int(np.clip(np.argmin(fc), 1, len(fine) - 2))
    c0, c1, c2 = fc[j - 1], fc[j], fc[j + 1]
    den = c0 - 2 * c1 + c2
    u_best = fine[j] + (0.5 * (c0 - c2) / den * (fine[1] - fine[0]) if den > 0 else 0.0)
    contrast = float(fc[j] / max(np.median(costs), 1e-9))
    if contrast > CONTRAST or fin[j] < MIN_OVERLAP or u_best <= 0:
        return None
    return OverlapScale(1.0 / float(u_best), contrast, float(fin[j]))


class OverlapScaleEstimator:
    """Metres per stream unit over many rig frames of the calibrated camera pairs
    (`overlap_scale` per pair and rig frame): a bounded history of answers, the
    median, and a relative standard error from their spread.

    Pairs that never answer (cameras looking apart) are asked rarely after
    `PROBE` tries, so a ring of cameras does not pay for them every rig frame."""

    #: rig frames a pair is asked before its answer rate decides how often it is
    PROBE = 10
    #: a pair answering less often than this is asked every RARE-th rig frame
    MIN_ANSWER_RATE = 0.2
    RARE = 10

    def __init__(self, history: int = 200):
        self.history = int(history)
        self._log_m: List[float] = []  # log metres per stream unit, oldest first
        self._pairs: Dict[Tuple[str, str], List[int]] = {}  # (a, b) -> [asked, answered]
        self._calls = 0

    def reset(self) -> None:
        """Forget the answers (the stream's unit changed); the pairs' answer
        rates are about the cameras, and stay."""
        self._log_m.clear()

    def rescale(self, factor: float) -> None:
        """The stream's unit changed by `factor` (positions x factor): metres per
        unit divide by it."""
        lf = float(np.log(factor))
        self._log_m = [v - lf for v in self._log_m]

    def observe(self, views: Sequence[Tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                depth_scale: float = 1.0) -> int:
        """One rig frame's calibrated views [(camera, image, depth, K,
        T_base_optical)] whose depth times `depth_scale` is in stream units (the
        factor goes onto the answer, not onto every pixel); returns the answers added."""
        self._calls += 1
        added = 0
        for ia, (a, img_a, depth_a, K_a, T_a) in enumerate(views):
            for b, img_b, _, K_b, T_b in views[ia + 1:]:
                count = self._pairs.setdefault((a, b), [0, 0])
                if count[0] >= self.PROBE and count[1] < self.MIN_ANSWER_RATE * count[0] \
                        and self._calls % self.RARE:
                    continue
                count[0] += 1
                T_b_a = inv_se3(np.asarray(T_b, np.float64)) @ np.asarray(T_a, np.float64)
                r = overlap_scale(img_a, depth_a, K_a, img_b, K_b, T_b_a, seed=self._calls)
                if r is None:
                    continue
                count[1] += 1
                self._log_m.append(float(np.log(r.metres_per_unit / depth_scale)))
                added += 1
        del self._log_m[:-self.history]
        return added

    def pairs(self) -> Dict[Tuple[str, str], Tuple[int, int]]:
        """(a, b) -> (rig frames asked, answered)."""
        return {k: (v[0], v[1]) for k, v in self._pairs.items()}

    def estimate(self) -> Optional[RigScale]:
        """Metres per stream unit (median of the answers), its relative standard
        error and one answer's relative spread (MAD), None before 3 answers."""
        n = len(self._log_m)
        if n < 3:
            return None
        v = np.asarray(self._log_m)
        med = float(np.median(v))
        spread = MAD_TO_SIGMA * float(np.median(np.abs(v - med)))
        # the answers' errors are partly shared (the same depth errors in consecutive
        # rig frames): a floor of 0.2 % keeps many answers from claiming more
        return RigScale(scale=float(np.exp(med)), std_error=max(spread / np.sqrt(n), 0.002), spread=spread,
                        n_measurements=n, n_inliers=n)


__all__ = ["OverlapScale", "OverlapScaleEstimator", "overlap_scale", "normalise"]
