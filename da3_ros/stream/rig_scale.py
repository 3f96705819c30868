"""A calibrated rig's metric scale (numpy only): metres per stream unit from the
metric baselines of its extrinsics (base_frame -> each optical frame, from
/tf_static) against the model's camera-to-camera translations, robustly over
the last observations (`RigScaleEstimator`), and how each baseline compares
with the calibration (`PairCheck`).

Poses are `c2w` of optical frames in the stream's world (its unit is metres only
for a metric model); extrinsics are `T_base_optical` (maps optical-frame points
into the base frame, metres), as /tf_static gives base_frame -> optical frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..geometry.transforms import inv_se3, is_rigid

#: robust sigma of a residual sample: 1.4826 x its median absolute value
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class RigScale:
    #: metres per stream unit (multiply stream depth and translations by it)
    scale: float
    #: relative 1-sigma uncertainty of `scale` (0.01: +-1 %)
    std_error: float
    #: relative scatter of one baseline measurement (robust RMS of the inliers)
    spread: float
    #: baseline measurements kept and used (inliers)
    n_measurements: int
    n_inliers: int


def _pairs_of(extrinsics: Mapping[str, np.ndarray]) -> List[Tuple[str, str, np.ndarray]]:
    """(camera a, camera b, T_a_b): b's optical frame in a's, for every pair a < b
    in the given order (metres)."""
    names = list(extrinsics)
    T = {}
    for n in names:
        M = np.asarray(extrinsics[n], np.float64)
        if not is_rigid(M, tol=1e-3):
            raise ValueError(f"extrinsics of {n!r} must be a finite 4x4 rigid transform")
        T[n] = M
    return [(a, b, inv_se3(T[a]) @ T[b]) for i, a in enumerate(names) for b in names[i + 1:]]


#: a pair whose model baseline points further than this from the calibrated one is rejected (degrees)
MAX_BASELINE_ANGLE_DEG = 30.0
#: a pair whose units per metre differ from the other pairs' median by more than this is rejected
MAX_BASELINE_LENGTH_ERROR = 0.3


@dataclass(frozen=True)
class PairCheck:
    """How the model's baseline between cameras `a` and `b` compares with the
    calibration: the angle between their mean translation (b in a's optical
    frame) and the calibrated one; its units per metre against the other pairs'
    median (`length_error`, relative; nan with a single pair); `accepted`: it feeds
    the scale (else `reason` says why not)."""

    a: str
    b: str
    baseline_m: float
    n: int
    angle_deg: float
    length_error: float
    accepted: bool
    reason: str = ""


class RigScaleEstimator:
    """Metres per stream unit from the rig's calibrated baselines.

    For each camera pair (a, b) with a metric baseline of at least
    `min_baseline` metres, one rig frame gives d = the model's translation from
    a to b (in a's optical frame, stream units) projected on the calibrated
    baseline direction; d = k * baseline + noise with k stream units per metre.
    The projection (not the length of the model's translation) keeps the
    estimate unbiased: noise across the baseline would lengthen it. k is the
    least-squares fit over the last `history` rig-frame observations after
    rejecting residuals beyond `outlier_sigmas` robust sigmas; scale = 1/k.
    A rig frame seen in several windows may be added once per window (the
    model's errors differ between windows); the bounded history also lets the
    estimate follow a slow drift of the stream's unit.
    """

    def __init__(self, extrinsics: Mapping[str, np.ndarray], history: int = 1000, min_baseline: float = 0.01,
                 outlier_sigmas: float = 3.0):
        self.pairs = []
        for a, b, T_ab in _pairs_of(extrinsics):
            length = float(np.linalg.norm(T_ab[:3, 3]))
            if length >= min_baseline:
                self.pairs.append((a, b, T_ab[:3, 3] / length, length))
        if not self.pairs:
            raise ValueError(f"no two cameras of the rig are {min_baseline} m apart: the rig cannot give a scale")
        self.outlier_sigmas = float(outlier_sigmas)
        # per rig frame: projections d, baselines L (metres), weight, pair indices, translations (stream units)
        self._obs: Deque[Tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]] = deque(maxlen=int(history))

    def reset(self) -> None:
        self._obs.clear()

    def rescale(self, factor: float) -> None:
        """The stream's unit changed by `factor`: the observations in the new unit."""
        self._obs = deque(((d * factor, L, w, p, t * factor) for d, L, w, p, t in self._obs), maxlen=self._obs.maxlen)

    def __len__(self) -> int:
        """Rig-frame observations kept."""
        return len(self._obs)

    def add(self, c2w: Mapping[str, np.ndarray], weight: float = 1.0) -> int:
        """One rig frame's camera poses (camera -> c2w in the stream's world, any
        subset of the rig); returns the baselines it measured."""
        d, length, pair, trans = [], [], [], []
        for i, (a, b, u, L) in enumerate(self.pairs):
            if a not in c2w or b not in c2w:
                continue
            t = (inv_se3(c2w[a]) @ np.asarray(c2w[b], np.float64))[:3, 3]
            if np.all(np.isfinite(t)):
                d.append(float(u @ t))
                length.append(L)
                pair.append(i)
                trans.append(t)
        if d and weight > 0:
            self._obs.append((np.array(d), np.array(length), float(weight), np.array(pair), np.array(trans)))
        return len(d) if weight > 0 else 0

    def check(self, min_observations: int = 10, max_angle_deg: float = MAX_BASELINE_ANGLE_DEG,
              max_length_error: float = MAX_BASELINE_LENGTH_ERROR) -> List[PairCheck]:
        """Each pair's baseline against the calibration (`PairCheck`). A pair is
        judged once it has `min_observations`; before that it is accepted.
        Direction: the angle of the model's mean translation from the calibrated
        baseline (a baseline pointing the wrong way is 180 degrees off). Length
        (two pairs or more): units per metre against the median of the pairs
        whose direction agrees; a rig's baselines keep their ratios whatever the
        stream's unit."""
        if self._obs:
            pair = np.concatenate([o[3] for o in self._obs])
            d = np.concatenate([o[0] for o in self._obs])
            trans = np.concatenate([o[4] for o in self._obs])
        else:
            pair, d, trans = np.zeros(0, int), np.zeros(0), np.zeros((0, 3))
        rows = []
        for i, (a, b, u, L) in enumerate(self.pairs):
            sel = pair == i
            n = int(sel.sum())
            mean_t = trans[sel].mean(axis=0) if n else np.zeros(3)
            norm = float(np.linalg.norm(mean_t))
            angle = float(np.degrees(np.arccos(np.clip(u @ mean_t / norm, -1.0, 1.0)))) if norm > 0 else float("nan")
            k = float(np.median(d[sel])) / L if n else float("nan")  # stream units per metre (robust)
            rows.append((a, b, L, n, angle, k))
        judged = [n >= min_observations for _, _, _, n, _, _ in rows]
        direction_ok = [not (j and not angle <= max_angle_deg) for j, (_, _, _, _, angle, _) in zip(judged, rows)]
        ks = [k for ok, j, (*_, k) in zip(direction_ok, judged, rows) if ok and j and k > 0]
        consensus = float(np.median(ks)) if len(ks) >= 2 else None
        out = []
        for j, ok, (a, b, L, n, angle, k) in zip(judged, direction_ok, rows):
            length_error = k / consensus - 1.0 if consensus and k > 0 else float("nan")
            if not ok:
                out.append(PairCheck(a, b, L, n, angle, length_error, False,
                                     f"the model's baseline {a}->{b} points {angle:.0f} deg away from the calibration's"))
            elif j and consensus and not abs(length_error) <= max_length_error:
                out.append(PairCheck(a, b, L, n, angle, length_error, False,
                                     f"the model's baseline {a}->{b} is {100 * length_error:+.0f} % off the length "
                                     "the rig's other baselines give"))
            else:
                out.append(PairCheck(a, b, L, n, angle, length_error, True))
        return out

    def estimate(self, pairs: Optional[Sequence[int]] = None) -> Optional[RigScale]:
        """None before any observation (of the given pair indices, default all) or
        when the fit is not positive."""
        keep = None if pairs is None else np.asarray(sorted(pairs), int)
        obs = []
        for d, L, w, p, _ in self._obs:
            sel = np.ones(len(d), bool) if keep is None else np.isin(p, keep)
            if sel.any():
                obs.append((d[sel], L[sel], w))
        if not obs:
            return None
        d = np.concatenate([o[0] for o in obs])
        L = np.concatenate([o[1] for o in obs])
        w = np.concatenate([np.full(len(o[0]), o[2]) for o in obs])
        k = float(np.median(d / L))  # a robust start
        inl = np.ones(len(d), bool)
        for _ in range(10):
            r = d - k * L
            sigma = MAD_TO_SIGMA * float(np.median(np.abs(r)))
            new = np.abs(r) <= max(self.outlier_sigmas * sigma, 1e-12 * abs(k) * L.max())
            if not new.any():
                break
            k = float(np.sum(w[new] * d[new] * L[new]) / np.sum(w[new] * L[new] ** 2))
            if np.array_equal(new, inl):
                break
            inl = new
        if not k > 0:
            return None
        r = np.where(inl, d - k * L, 0.0)
        n = int(inl.sum())
        # the baselines of one rig frame share its cameras' errors: the variance of
        # k sums the residuals per rig frame before squaring (clustered sandwich)
        rig_frame = np.repeat(np.arange(len(obs)), [len(o[0]) for o in obs])
        per_frame = np.bincount(rig_frame, w * L * r)
        n_frames = int(np.count_nonzero(np.bincount(rig_frame, inl)))
        var_k = float(np.sum(per_frame ** 2)) / float(np.sum(w[inl] * L[inl] ** 2)) ** 2
        var_k *= n_frames / max(n_frames - 1, 1)  # small-sample correction
        std_error = float(np.sqrt(var_k)) / k
        spread = float(np.sqrt(np.mean((r[inl] / (k * L[inl])) ** 2)))
        return RigScale(1.0 / k, std_error, spread, len(d), n)
