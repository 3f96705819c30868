"""Multi-camera rigs in the streaming core (numpy only, no threads).

* `RigSynchronizer` (stream/rig_sync.py, re-exported here) groups the images of
  N named cameras whose stamps lie within a tolerance into rig frames.
* `RigScaleEstimator`: metres per stream unit from a calibrated rig, i.e. the
  metric baselines of its extrinsics (base_frame -> each optical frame, from
  /tf_static) against the model's camera-to-camera translations, robustly over
  the last observations.
* `RigExtrinsicsEstimator`: without calibrated extrinsics, each camera's pose
  relative to the first camera, averaged over time from the model's poses.
* `RigState`: what the stream can say of the rig's scale, per camera (`RIG_STATES`):
  no calibration; calibration found, estimate pending; estimate rejected (the
  model's baseline disagrees with the calibration in direction or length); metric.

Poses are `c2w` of optical frames in the stream's world (its unit is metres only
for a metric model); extrinsics are `T_base_optical` (maps optical-frame points
into the base frame, metres), as /tf_static gives base_frame -> optical frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..geometry.transforms import c2w_to_tum, inv_se3, is_rigid, make_se3, project_to_so3, rotation_angle_deg
from .rig_sync import RigFrame, RigSynchronizer, RigView  # noqa: F401 - rig frames, re-exported

#: robust sigma of a residual sample: 1.4826 x its median absolute value
_MAD_TO_SIGMA = 1.4826


# -- metric scale from calibrated extrinsics -----------------------------------

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
            sigma = _MAD_TO_SIGMA * float(np.median(np.abs(r)))
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


# -- extrinsics estimated from the model's poses --------------------------------

@dataclass(frozen=True)
class EstimatedExtrinsics:
    """A camera's optical frame in the reference camera's optical frame.

    T_reference_camera: (4,4), translation in stream units.
    translation_spread: RMS distance of the inlier observations from the
        estimate (stream units); rotation_spread_deg: their RMS angle from it.
    """

    camera: str
    reference: str
    T_reference_camera: np.ndarray
    translation_spread: float
    rotation_spread_deg: float
    n_observations: int
    n_inliers: int

    @property
    def translation_std_error(self) -> float:
        """Uncertainty of the translation (stream units), treating observations as independent."""
        return float(self.translation_spread / np.sqrt(max(self.n_inliers, 1)))

    @property
    def rotation_std_error_deg(self) -> float:
        return float(self.rotation_spread_deg / np.sqrt(max(self.n_inliers, 1)))

    def in_metres(self, scale: float) -> np.ndarray:
        """T_reference_camera with its translation times `scale` (metres per stream unit)."""
        T = self.T_reference_camera.copy()
        T[:3, 3] *= scale
        return T


class RigExtrinsicsEstimator:
    """Each camera's pose relative to the first camera (`cameras[0]`, the
    reference), from the model's poses of rig frames, over the last `history`
    observations: rotations averaged by projecting their mean onto SO(3),
    translations averaged (stream units), after dropping observations beyond
    `outlier_sigmas` robust sigmas in angle or distance."""

    def __init__(self, cameras: Sequence[str], history: int = 300, outlier_sigmas: float = 3.0):
        self.cameras = tuple(cameras)
        if len(self.cameras) < 2 or len(set(self.cameras)) != len(self.cameras):
            raise ValueError("a rig needs at least two distinct cameras")
        self.reference = self.cameras[0]
        self.outlier_sigmas = float(outlier_sigmas)
        self._obs: Dict[str, Deque[np.ndarray]] = {c: deque(maxlen=int(history)) for c in self.cameras[1:]}

    def reset(self) -> None:
        for q in self._obs.values():
            q.clear()

    def rescale(self, factor: float) -> None:
        """The stream's unit changed by `factor`: the observed translations in the new unit."""
        for q in self._obs.values():
            for T in q:
                T[:3, 3] *= factor

    def add(self, c2w: Mapping[str, np.ndarray]) -> int:
        """One rig frame's poses (camera -> c2w, stream world); needs the
        reference camera. Returns the cameras observed."""
        if self.reference not in c2w:
            return 0
        w2c_ref = inv_se3(c2w[self.reference])
        n = 0
        for c, q in self._obs.items():
            if c in c2w:
                T = w2c_ref @ np.asarray(c2w[c], np.float64)
                if np.all(np.isfinite(T)):
                    q.append(T)
                    n += 1
        return n

    def estimate(self) -> Dict[str, EstimatedExtrinsics]:
        """camera -> estimate, for the cameras observed at least once."""
        out = {}
        for c, q in self._obs.items():
            if q:
                out[c] = self._average(c, np.array(q))
        return out

    def _average(self, camera: str, T: np.ndarray) -> EstimatedExtrinsics:
        R, t = T[:, :3, :3], T[:, :3, 3]
        inl = np.ones(len(T), bool)
        for _ in range(10):
            R_mean = project_to_so3(R[inl].mean(axis=0))
            t_mean = t[inl].mean(axis=0)
            ang = rotation_angle_deg(np.einsum("ji,njk->nik", R_mean, R))
            dist = np.linalg.norm(t - t_mean, axis=1)
            new = ((ang <= max(self.outlier_sigmas * _MAD_TO_SIGMA * np.median(ang), 1e-9))
                   & (dist <= max(self.outlier_sigmas * _MAD_TO_SIGMA * np.median(dist), 1e-12 * (1 + np.linalg.norm(t_mean)))))
            if not new.any() or np.array_equal(new, inl):
                break
            inl = new
        R_mean = project_to_so3(R[inl].mean(axis=0))
        t_mean = t[inl].mean(axis=0)
        ang = rotation_angle_deg(np.einsum("ji,njk->nik", R_mean, R[inl]))
        dist = np.linalg.norm(t[inl] - t_mean, axis=1)
        return EstimatedExtrinsics(camera, self.reference, make_se3(R_mean, t_mean), float(np.sqrt(np.mean(dist ** 2))),
                                   float(np.sqrt(np.mean(ang ** 2))), len(T), int(inl.sum()))

    def to_dict(self, scale: Optional[float] = None) -> Dict[str, Any]:
        """The estimates as plain JSON-able data (for a result file). With
        `scale` (metres per stream unit) translations and spreads are metres."""
        k = 1.0 if scale is None else float(scale)
        cams = {}
        for c, e in self.estimate().items():
            tum = c2w_to_tum(e.T_reference_camera)[0]
            cams[c] = {
                "parent": e.reference,
                "translation": [float(x) * k for x in tum[:3]],
                "rotation_xyzw": [float(x) for x in tum[3:]],
                "translation_spread": e.translation_spread * k,
                "translation_std_error": e.translation_std_error * k,
                "rotation_spread_deg": e.rotation_spread_deg,
                "rotation_std_error_deg": e.rotation_std_error_deg,
                "observations": e.n_observations,
                "inliers": e.n_inliers,
            }
        return {"reference_camera": self.reference, "unit": "stream" if scale is None else "metres",
                "metres_per_unit": None if scale is None else k, "cameras": cams}


# -- what the stream can say of the rig's scale ------------------------------------

#: a camera's rig state, in the order a rig goes through them
RIG_STATES = ("no_calibration", "pending", "rejected", "metric")


@dataclass(frozen=True)
class CameraRigState:
    """One camera's rig state (`RIG_STATES`) and a line saying why, with numbers."""

    camera: str
    state: str
    detail: str


@dataclass(frozen=True)
class RigState:
    """The rig's scale as the stream sees it: per camera (`cameras`), overall
    (`state`: metric once the world is; else pending while a pair of calibrated
    cameras is still trusted; rejected when every calibrated pair disagrees; else
    no_calibration), the rig frames seen, metres per unit once metric, the current
    estimate (over the accepted pairs) and every pair's check."""

    state: str
    cameras: Dict[str, CameraRigState]
    rig_frames: int
    metres_per_unit: Optional[float]
    estimate: Optional[RigScale]
    pairs: Tuple[PairCheck, ...]

    @property
    def metric(self) -> bool:
        return self.state == "metric"

    def summary(self) -> str:
        """One line for a log."""
        return "; ".join(f"{c.camera}: {c.state} ({c.detail})" for c in self.cameras.values())

    def to_dict(self) -> Dict[str, Any]:
        e = self.estimate
        return {"state": self.state, "rig_frames": self.rig_frames, "metres_per_unit": self.metres_per_unit,
                "estimate": None if e is None else {"metres_per_unit": e.scale, "std_error": e.std_error,
                                                    "spread": e.spread, "inliers": e.n_inliers},
                "cameras": {c: {"state": s.state, "detail": s.detail} for c, s in self.cameras.items()},
                "pairs": [{"cameras": [p.a, p.b], "baseline_m": p.baseline_m, "observations": p.n,
                           "angle_deg": None if np.isnan(p.angle_deg) else p.angle_deg,
                           "length_error": None if np.isnan(p.length_error) else p.length_error,
                           "accepted": p.accepted, "reason": p.reason} for p in self.pairs]}


# -- what a stream learns about its rig -------------------------------------------

class RigCalibration:
    """The rig as the stream sees it, for the Streamer to feed once per window.

    With extrinsics known (Frame.T_base_optical of at least two cameras with a
    baseline, from /tf_static) it estimates the metric scale (`scale()`); in any
    case it estimates each camera's pose relative to the first camera of
    `cameras` from the model's poses (`extrinsics()`). Feed it every window's
    views (`observe`): a rig frame kept in K windows then counts K times, each
    with the model's errors of that window (this is what makes a short baseline
    usable: the noisy oracle's 10 cm stereo pair needs about 4 windows per rig
    frame to reach ~1.5 % in 30 rig frames). Errors a real model repeats across
    windows make `std_error` optimistic by up to sqrt(K).
    """

    def __init__(self, cameras: Sequence[str], history: int = 1000, min_baseline: float = 0.01,
                 outlier_sigmas: float = 3.0):
        self.cameras = tuple(cameras)
        self.history, self.min_baseline, self.outlier_sigmas = int(history), float(min_baseline), float(outlier_sigmas)
        self._T_base_optical: Dict[str, np.ndarray] = {}
        self._scale: Optional[RigScaleEstimator] = None
        self._relative = (RigExtrinsicsEstimator(self.cameras, self.history, self.outlier_sigmas)
                          if len(self.cameras) >= 2 else None)

    def reset(self) -> None:
        """Forget the observations (a world reset: the stream's unit changes); the
        known extrinsics stay."""
        if self._scale is not None:
            self._scale.reset()
        if self._relative is not None:
            self._relative.reset()

    def rescale(self, factor: float) -> None:
        """The stream's unit changed by `factor` (its world turned metric): what was
        observed is kept, in the new unit."""
        if self._scale is not None:
            self._scale.rescale(factor)
        if self._relative is not None:
            self._relative.rescale(factor)

    def observe(self, views: Sequence[Tuple[Any, Any, np.ndarray]]) -> None:
        """One window's views: (rig frame key, Frame, c2w in the stream frame).
        Views of one rig frame share the key (Streamer: WindowEntry.group)."""
        by_key: Dict[Any, Dict[str, np.ndarray]] = {}
        for key, frame, c2w in views:
            if frame.camera not in self.cameras:
                continue
            if frame.T_base_optical is not None:
                self._learn_extrinsics(frame.camera, np.asarray(frame.T_base_optical, np.float64))
            by_key.setdefault(key, {})[frame.camera] = np.asarray(c2w, np.float64)
        for poses in by_key.values():
            if self._scale is not None:
                self._scale.add(poses)
            if self._relative is not None:
                self._relative.add(poses)

    def _learn_extrinsics(self, camera: str, T: np.ndarray) -> None:
        old = self._T_base_optical.get(camera)
        if old is not None and np.allclose(old, T, atol=1e-9):
            return
        self._T_base_optical[camera] = T  # new or changed (/tf_static re-sent): start the scale over
        known = {c: self._T_base_optical[c] for c in self.cameras if c in self._T_base_optical}
        try:
            self._scale = RigScaleEstimator(known, self.history, self.min_baseline, self.outlier_sigmas)
        except ValueError:  # fewer than two cameras apart: no scale from the rig (yet)
            self._scale = None

    def scale(self, min_observations: int = 10) -> Optional[RigScale]:
        """Metres per stream unit from the calibrated baselines whose model
        baselines agree with them (`RigScaleEstimator.check`), None without any."""
        if self._scale is None:
            return None
        accepted = [i for i, c in enumerate(self._scale.check(min_observations)) if c.accepted]
        return self._scale.estimate(accepted) if accepted else None

    def state(self, rig_frames: int, metres_per_unit: Optional[float], min_frames: int = 10,
              max_error: float = 0.01) -> RigState:
        """The rig's state (`RigState`) after `rig_frames` rig frames; the world is
        metric from the rig when `metres_per_unit` (per first-window unit) is set.
        `min_frames` and `max_error`: what the Streamer waits for before it trusts
        the scale (StreamConfig.rig_scale_min_frames / rig_scale_max_error)."""
        checks = tuple(self._scale.check(min_frames)) if self._scale is not None else ()
        accepted = [i for i, c in enumerate(checks) if c.accepted]
        estimate = self._scale.estimate(accepted) if accepted else None
        cams: Dict[str, CameraRigState] = {}
        for c in self.cameras:
            mine = [p for p in checks if c in (p.a, p.b)]
            if c not in self._T_base_optical:
                cams[c] = CameraRigState(c, "no_calibration", "no extrinsics (T_base_optical) for this camera")
            elif not mine:
                cams[c] = CameraRigState(c, "no_calibration", f"calibrated, but no other camera is "
                                                              f"(at least {self.min_baseline} m away)")
            elif not any(p.accepted for p in mine):
                worst = max(mine, key=lambda p: (np.nan_to_num(p.angle_deg), abs(np.nan_to_num(p.length_error))))
                cams[c] = CameraRigState(c, "rejected",
                                         f"{worst.reason} (over {worst.n} observations: rig frames, once per window)")
            elif metres_per_unit is not None:
                err = f", relative error {100 * estimate.std_error:.2f} %" if estimate is not None else ""
                cams[c] = CameraRigState(c, "metric", f"{metres_per_unit:.5f} metres per first-window unit{err}")
            else:
                err = "no estimate yet" if estimate is None else \
                    f"relative error {100 * estimate.std_error:.2f} % (needs <= {100 * max_error:.2f} %)"
                cams[c] = CameraRigState(c, "pending", f"rig frames seen {rig_frames} (needs >= {min_frames}), {err}")
        if metres_per_unit is not None:
            overall = "metric"
        elif accepted:
            overall = "pending"
        elif checks:
            overall = "rejected"
        else:
            overall = "no_calibration"
        return RigState(overall, cams, int(rig_frames), metres_per_unit, estimate, checks)

    def extrinsics(self) -> Dict[str, EstimatedExtrinsics]:
        """Each other camera in the first camera's optical frame (stream units)."""
        return self._relative.estimate() if self._relative is not None else {}

    def to_dict(self, s: Optional[RigScale] = None) -> Dict[str, Any]:
        """Scale `s` (default: `scale()`) and estimated extrinsics as plain JSON-able
        data (a result file); translations in metres when the scale is known."""
        s = s if s is not None else self.scale()
        out: Dict[str, Any] = {"cameras": list(self.cameras), "scale": None, "extrinsics": None}
        if s is not None:
            out["scale"] = {"metres_per_unit": s.scale, "std_error": s.std_error, "spread": s.spread,
                            "measurements": s.n_measurements, "inliers": s.n_inliers}
        if self._relative is not None:
            out["extrinsics"] = self._relative.to_dict(None if s is None else s.scale)
        return out
