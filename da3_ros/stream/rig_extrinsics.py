"""A rig's extrinsics estimated from the model's poses (numpy only), for a rig
without calibrated extrinsics: each camera's pose relative to the first camera,
averaged over time (`RigExtrinsicsEstimator`), in stream units.

Poses are `c2w` of optical frames in the stream's world."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, Mapping, Optional, Sequence

import numpy as np

from ..geometry.transforms import c2w_to_tum, inv_se3, make_se3, project_to_so3, rotation_angle_deg
from .rig_scale import MAD_TO_SIGMA


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
            new = ((ang <= max(self.outlier_sigmas * MAD_TO_SIGMA * np.median(ang), 1e-9))
                   & (dist <= max(self.outlier_sigmas * MAD_TO_SIGMA * np.median(dist), 1e-12 * (1 + np.linalg.norm(t_mean)))))
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
