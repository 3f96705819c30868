"""Multi-camera rigs in the streaming core (numpy only, no threads).

* `RigSynchronizer` (stream/rig_sync.py, re-exported here) groups the images of
  N named cameras whose stamps lie within a tolerance into rig frames.
* `RigScaleEstimator`: metres per stream unit from a calibrated rig, i.e. the
  metric baselines of its extrinsics (base_frame -> each optical frame, from
  /tf_static) against the model's camera-to-camera translations, robustly over
  the last observations.
* `RigExtrinsicsEstimator`: without calibrated extrinsics, each camera's pose
  relative to the first camera, averaged over time from the model's poses.

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
        self._obs: Deque[Tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=int(history))

    def reset(self) -> None:
        self._obs.clear()

    def rescale(self, factor: float) -> None:
        """The stream's unit changed by `factor`: the observations in the new unit."""
        self._obs = deque(((d * factor, L, w) for d, L, w in self._obs), maxlen=self._obs.maxlen)

    def __len__(self) -> int:
        """Rig-frame observations kept."""
        return len(self._obs)

    def add(self, c2w: Mapping[str, np.ndarray], weight: float = 1.0) -> int:
        """One rig frame's camera poses (camera -> c2w in the stream's world, any
        subset of the rig); returns the baselines it measured."""
        d, length = [], []
        for a, b, u, L in self.pairs:
            if a not in c2w or b not in c2w:
                continue
            t = (inv_se3(c2w[a]) @ np.asarray(c2w[b], np.float64))[:3, 3]
            if np.all(np.isfinite(t)):
                d.append(float(u @ t))
                length.append(L)
        if d and weight > 0:
            self._obs.append((np.array(d), np.array(length), float(weight)))
        return len(d) if weight > 0 else 0

    def estimate(self) -> Optional[RigScale]:
        """None before any observation or when the fit is not positive."""
        if not self._obs:
            return None
        d = np.concatenate([o[0] for o in self._obs])
        L = np.concatenate([o[1] for o in self._obs])
        w = np.concatenate([np.full(len(o[0]), o[2]) for o in self._obs])
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
        rig_frame = np.repeat(np.arange(len(self._obs)), [len(o[0]) for o in self._obs])
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

    def scale(self) -> Optional[RigScale]:
        """Metres per stream unit from the calibrated baselines, None without them."""
        return self._scale.estimate() if self._scale is not None else None

    def extrinsics(self) -> Dict[str, EstimatedExtrinsics]:
        """Each other camera in the first camera's optical frame (stream units)."""
        return self._relative.estimate() if self._relative is not None else {}

    def to_dict(self) -> Dict[str, Any]:
        """Scale and estimated extrinsics as plain JSON-able data (a result file);
        translations in metres when the scale is known."""
        s = self.scale()
        out: Dict[str, Any] = {"cameras": list(self.cameras), "scale": None, "extrinsics": None}
        if s is not None:
            out["scale"] = {"metres_per_unit": s.scale, "std_error": s.std_error, "spread": s.spread,
                            "measurements": s.n_measurements, "inliers": s.n_inliers}
        if self._relative is not None:
            out["extrinsics"] = self._relative.to_dict(None if s is None else s.scale)
        return out
