"""The rig's scale, kept with the rig: when a calibrated rig (extrinsics in
metres from /tf_static) has shown its scale precisely enough, the stream's unit
becomes metres. Two measurements of it: the model's baselines between the
cameras of one rig frame against the calibrated ones (`rig.RigCalibration`),
and, for cameras that see the same scene, the image overlap under the model's
depth and the calibrated extrinsics (`rig_overlap`: it needs no pose from the
model, so it also serves a baseline the model cannot resolve). The more
precise one fixes the scale. Numpy only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .config import StreamConfig
from .rig import CameraRigState, RigCalibration, RigState
from .rig_extrinsics import EstimatedExtrinsics
from .rig_overlap import OverlapScaleEstimator
from .rig_scale import RigScale


class RigMetric:
    """A rig's calibration (`RigCalibration`: scale from calibrated baselines,
    extrinsics estimated from the model) and the metres per stream unit it fixed.

    `observe` returns the factor the stream's unit must change by, or None when
    it stays; the caller rescales what it keeps (the world, its keyframes) and
    this rig's observations (`rescale`)."""

    #: once metric, the overlap (10-30 ms of host time per camera pair) checks the
    #: scale every this many rig frames, not every one
    OVERLAP_CHECK_EVERY = 15

    def __init__(self, cfg: StreamConfig):
        self.calibration = RigCalibration(cfg.cameras)
        self.overlap = OverlapScaleEstimator()
        #: which measurement fixed the scale last: "baselines" or "overlap"
        self.source: Optional[str] = None
        #: metres per unit of the first window, once a calibrated rig fixed it
        self.metres_per_unit: Optional[float] = None
        self.updates = 0
        # what the last observe saw, for state(): rig frames, the world's unit, the thresholds
        self._seen: Tuple[int, bool, StreamConfig] = (0, False, cfg)

    def reset(self) -> None:
        self.calibration.reset()
        self.overlap.reset()
        self.metres_per_unit = None
        self.source = None
        self._seen = (0, False, self._seen[2])

    def rescale(self, factor: float) -> None:
        self.calibration.rescale(factor)
        self.overlap.rescale(factor)

    def observe(self, views: Sequence[Tuple[Any, Any, np.ndarray]], world_metric: bool, n_rig_frames: int,
                cfg: StreamConfig, newest: Sequence[Tuple[Any, np.ndarray, np.ndarray]] = (),
                depth_scale: float = 1.0) -> Optional[float]:
        """A window's views [(rig frame, Frame, c2w in the stream)] (shared ones
        too: each window's errors differ, which is what makes a short baseline
        usable) and the newest rig frame's views with their depth [(Frame,
        depth, K)] for the overlap (depth x `depth_scale` in stream units). Returns the unit's factor
        when the scale is (re)fixed: a confident estimate, after
        `rig_scale_min_frames` rig frames, that the stream is not yet metric or
        no longer agrees with (2 standard errors, at least a fifth of
        rig_scale_max_error); else None."""
        self.calibration.observe(views)
        if self.metres_per_unit is None or n_rig_frames % self.OVERLAP_CHECK_EVERY == 0:
            calibrated = [(f.camera, f.image, d, K, f.T_base_optical) for f, d, K in newest
                          if f.T_base_optical is not None and f.camera in cfg.cameras]
            if len(calibrated) >= 2:
                self.overlap.observe(calibrated, depth_scale)
        self._seen = (n_rig_frames, world_metric, cfg)
        estimate, source = self._estimate(cfg)
        if estimate is None or world_metric and self.metres_per_unit is None:
            return None  # no calibrated measurement, or metres already (metric model, external poses)
        if estimate.std_error > cfg.rig_scale_max_error or n_rig_frames < cfg.rig_scale_min_frames:
            return None
        agrees = abs(estimate.scale - 1.0) <= max(2.0 * estimate.std_error, cfg.rig_scale_max_error / 5)
        if agrees and self.metres_per_unit is not None:
            return None  # metric, and the rig still agrees
        factor = 1.0 if agrees else float(estimate.scale)
        self.metres_per_unit = (self.metres_per_unit or 1.0) * factor
        self.source = source
        self.updates += 1
        return factor

    def _estimate(self, cfg: StreamConfig) -> Tuple[Optional[RigScale], Optional[str]]:
        """The more precise of the baselines' and the overlap's estimates, and
        which it is."""
        baselines = self.calibration.scale(cfg.rig_scale_min_frames)  # over the baselines the model agrees with
        overlap = self.overlap.estimate()
        if overlap is not None and overlap.n_measurements < cfg.rig_scale_min_frames:
            overlap = None
        if overlap is not None and (baselines is None or overlap.std_error < baselines.std_error):
            return overlap, "overlap"
        return baselines, None if baselines is None else "baselines"

    def extrinsics(self) -> Dict[str, EstimatedExtrinsics]:
        """Each camera's pose in the first camera's optical frame, as estimated
        from the model (stream units: metres once metric)."""
        return self.calibration.extrinsics()

    def state(self) -> RigState:
        """The rig's scale state per camera (stream.rig.RigState). A world already
        metric without the rig (metric model, external poses) is one metre per
        unit, and the rig is checked against that."""
        n, world_metric, cfg = self._seen
        metres = self.metres_per_unit
        if metres is None and world_metric:
            metres = 1.0
        base = self.calibration.state(n, metres, cfg.rig_scale_min_frames, cfg.rig_scale_max_error)
        return self._with_overlap(base, cfg)

    def _with_overlap(self, base: RigState, cfg: StreamConfig) -> RigState:
        """`base` (the baselines' view of the rig) with what the overlap says for
        the cameras whose images answered: metric when the overlap fixed the
        scale, pending while its answers accumulate (the baselines' verdict is
        kept in the detail)."""
        answered: Dict[str, List[str]] = {}
        for (a, b), (_, hits) in self.overlap.pairs().items():
            if hits:
                answered.setdefault(a, []).append(b)
                answered.setdefault(b, []).append(a)
        o = self.overlap.estimate()
        if not answered or o is None:
            return base
        err, k = o.std_error, o.n_measurements
        cams = dict(base.cameras)
        for c, others in answered.items():
            was = cams.get(c)
            note = "" if was is None or was.state in ("pending", "metric") else f"; the model's baselines: {was.detail}"
            with_ = ", ".join(sorted(others))
            if base.metres_per_unit is not None and self.source == "overlap":
                cams[c] = CameraRigState(c, "metric", f"{base.metres_per_unit:.5f} metres per first-window unit from "
                                                      f"the image overlap with {with_} ({k} answers, relative error "
                                                      f"{100 * err:.2f} %){note}")
            elif base.metres_per_unit is None:
                progress = (f"image overlap with {with_}: {k} answers (needs >= {cfg.rig_scale_min_frames}), relative "
                            f"error {100 * err:.2f} % (needs <= {100 * cfg.rig_scale_max_error:.2f} %)")
                pending = was is not None and was.state == "pending"
                cams[c] = CameraRigState(c, "pending", f"{was.detail}; {progress}" if pending else progress + note)
        overall = base.state
        if base.metres_per_unit is None and any(cs.state == "pending" for cs in cams.values()):
            overall = "pending"
        estimate = o if self.source == "overlap" or base.estimate is None else base.estimate
        return replace(base, state=overall, cameras=cams, estimate=estimate)

    def status(self) -> Dict[str, str]:
        """The rig's state for diagnostics: `state`, per camera `<camera>_state`
        (one of stream.rig.RIG_STATES) and `<camera>` (why, with numbers), the
        current estimate and the scale updates applied."""
        state = self.state()
        out = {"state": state.state, "frames_seen": str(state.rig_frames),
               "metres_per_unit": "n/a" if state.metres_per_unit is None else f"{state.metres_per_unit:.5f}",
               "scale_updates": str(self.updates)}
        for c, cs in state.cameras.items():
            out[f"{c}_state"], out[c] = cs.state, cs.detail
        e = state.estimate
        if e is not None:
            out.update(scale_residual=f"{e.scale:.5f}", scale_std_error=f"{e.std_error:.4f}",
                       scale_spread=f"{e.spread:.4f}")
        out["scale_source"] = self.source or "none"
        for (a, b), (asked, hits) in self.overlap.pairs().items():
            out[f"overlap_{a}_{b}"] = f"{hits}/{asked} rig frames answered"
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The state, scale and estimated extrinsics as JSON-able data (a result file)."""
        state = self.state()
        out = self.calibration.to_dict(state.estimate)
        out["metres_per_first_window_unit"] = self.metres_per_unit
        out["state"] = state.to_dict()
        out["scale_source"] = self.source
        out["overlap_pairs"] = {f"{a}-{b}": {"asked": n, "answered": k} for (a, b), (n, k) in self.overlap.pairs().items()}
        return out
