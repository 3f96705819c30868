"""The rig's scale, kept with the rig: when a calibrated rig (extrinsics in
metres from /tf_static) has shown its baselines precisely enough, the stream's
unit becomes metres. Numpy only."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .config import StreamConfig
from .rig import RigCalibration, RigState
from .rig_extrinsics import EstimatedExtrinsics


class RigMetric:
    """A rig's calibration (`RigCalibration`: scale from calibrated baselines,
    extrinsics estimated from the model) and the metres per stream unit it fixed.

    `observe` returns the factor the stream's unit must change by, or None when
    it stays; the caller rescales what it keeps (the world, its keyframes) and
    this rig's observations (`rescale`)."""

    def __init__(self, cfg: StreamConfig):
        self.calibration = RigCalibration(cfg.cameras)
        #: metres per unit of the first window, once a calibrated rig fixed it
        self.metres_per_unit: Optional[float] = None
        self.updates = 0
        # what the last observe saw, for state(): rig frames, the world's unit, the thresholds
        self._seen: Tuple[int, bool, StreamConfig] = (0, False, cfg)

    def reset(self) -> None:
        self.calibration.reset()
        self.metres_per_unit = None
        self._seen = (0, False, self._seen[2])

    def rescale(self, factor: float) -> None:
        self.calibration.rescale(factor)

    def observe(self, views: Sequence[Tuple[Any, Any, np.ndarray]], world_metric: bool, n_rig_frames: int,
                cfg: StreamConfig) -> Optional[float]:
        """A window's views [(rig frame, Frame, c2w in the stream)] (shared ones
        too: each window's errors differ, which is what makes a short baseline
        usable). Returns the unit's factor when the scale is (re)fixed: a
        confident estimate, after `rig_scale_min_frames` rig frames, that the
        stream is not yet metric or no longer agrees with (2 standard errors,
        at least a fifth of rig_scale_max_error); else None."""
        self.calibration.observe(views)
        self._seen = (n_rig_frames, world_metric, cfg)
        estimate = self.calibration.scale(cfg.rig_scale_min_frames)  # over the baselines the model agrees with
        if estimate is None or world_metric and self.metres_per_unit is None:
            return None  # no calibrated baseline, or metres already (metric model, external poses)
        if estimate.std_error > cfg.rig_scale_max_error or n_rig_frames < cfg.rig_scale_min_frames:
            return None
        agrees = abs(estimate.scale - 1.0) <= max(2.0 * estimate.std_error, cfg.rig_scale_max_error / 5)
        if agrees and self.metres_per_unit is not None:
            return None  # metric, and the rig still agrees
        factor = 1.0 if agrees else float(estimate.scale)
        self.metres_per_unit = (self.metres_per_unit or 1.0) * factor
        self.updates += 1
        return factor

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
        return self.calibration.state(n, metres, cfg.rig_scale_min_frames, cfg.rig_scale_max_error)

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
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The state, scale and estimated extrinsics as JSON-able data (a result file)."""
        state = self.state()
        out = self.calibration.to_dict(state.estimate)
        out["metres_per_first_window_unit"] = self.metres_per_unit
        out["state"] = state.to_dict()
        return out
