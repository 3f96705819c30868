"""The rig's scale, kept with the rig: when a calibrated rig (extrinsics in
metres from /tf_static) has shown its baselines precisely enough, the stream's
unit becomes metres. Numpy only."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .config import StreamConfig
from .rig import EstimatedExtrinsics, RigCalibration


class RigMetric:
    """A rig's calibration (`RigCalibration`: scale from calibrated baselines,
    extrinsics estimated from the model) and the metres per stream unit it fixed.

    `observe` returns the factor the stream's unit must change by, or None when
    it stays; the caller rescales what it keeps (the world, its keyframes) and
    this rig's observations (`rescale`)."""

    def __init__(self, cameras: Sequence[str]):
        self.calibration = RigCalibration(cameras)
        #: metres per unit of the first window, once a calibrated rig fixed it
        self.metres_per_unit: Optional[float] = None
        self.updates = 0

    def reset(self) -> None:
        self.calibration.reset()
        self.metres_per_unit = None

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
        estimate = self.calibration.scale()
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

    def status(self) -> Dict[str, str]:
        """The scale and its estimate, for diagnostics."""
        estimate = self.calibration.scale()
        out = {"metres_per_unit": "n/a" if self.metres_per_unit is None else f"{self.metres_per_unit:.5f}",
               "scale_updates": str(self.updates)}
        if estimate is not None:
            out.update(scale_residual=f"{estimate.scale:.5f}", scale_std_error=f"{estimate.std_error:.4f}",
                       scale_spread=f"{estimate.spread:.4f}")
        else:
            out["scale_residual"] = "no calibrated baseline (extrinsics estimated)"
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The scale and estimated extrinsics as JSON-able data (a result file)."""
        out = self.calibration.to_dict()
        out["metres_per_first_window_unit"] = self.metres_per_unit
        return out
