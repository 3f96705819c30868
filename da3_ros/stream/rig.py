"""What a stream learns about its multi-camera rig (numpy only, no threads).

* `RigCalibration`: fed every window's views; with calibrated extrinsics (from
  /tf_static) the metric scale (stream.rig_scale), and in any case each
  camera's pose relative to the first camera (stream.rig_extrinsics).
* `RigState`: what the stream can say of the rig's scale, per camera (`RIG_STATES`):
  no calibration; calibration found, estimate pending; estimate rejected (the
  model's baseline disagrees with the calibration in direction or length); metric.

Rig frames themselves (images grouped by stamp) are stream.rig_sync's; the
metres per unit a rig fixes, stream.rig_metric's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .rig_extrinsics import EstimatedExtrinsics, RigExtrinsicsEstimator
from .rig_scale import PairCheck, RigScale, RigScaleEstimator


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
        cams = {c: self._camera_state(c, checks, rig_frames, metres_per_unit, estimate, min_frames, max_error)
                for c in self.cameras}
        if metres_per_unit is not None:
            overall = "metric"
        elif accepted:
            overall = "pending"
        elif checks:
            overall = "rejected"
        else:
            overall = "no_calibration"
        return RigState(overall, cams, int(rig_frames), metres_per_unit, estimate, checks)

    def _camera_state(self, c: str, checks: Sequence[PairCheck], rig_frames: int, metres_per_unit: Optional[float],
                      estimate: Optional[RigScale], min_frames: int, max_error: float) -> CameraRigState:
        mine = [p for p in checks if c in (p.a, p.b)]
        if c not in self._T_base_optical:
            return CameraRigState(c, "no_calibration", "no extrinsics (T_base_optical) for this camera")
        if not mine:
            return CameraRigState(c, "no_calibration", f"calibrated, but no other camera is "
                                                       f"(at least {self.min_baseline} m away)")
        if not any(p.accepted for p in mine):
            worst = max(mine, key=lambda p: (np.nan_to_num(p.angle_deg), abs(np.nan_to_num(p.length_error))))
            return CameraRigState(c, "rejected",
                                  f"{worst.reason} (over {worst.n} observations: rig frames, once per window)")
        if metres_per_unit is not None:
            err = f", relative error {100 * estimate.std_error:.2f} %" if estimate is not None else ""
            return CameraRigState(c, "metric", f"{metres_per_unit:.5f} metres per first-window unit{err}")
        err = "no estimate yet" if estimate is None else \
            f"relative error {100 * estimate.std_error:.2f} % (needs <= {100 * max_error:.2f} %)"
        return CameraRigState(c, "pending", f"rig frames seen {rig_frames} (needs >= {min_frames}), {err}")

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
