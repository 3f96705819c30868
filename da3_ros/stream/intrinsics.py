"""A camera's intrinsics from the model's per-frame estimates.

A camera's intrinsics do not change, while the model's estimate wobbles from
frame to frame, so publish a running median (robust to a bad window) over the
last estimates; start over when the resolution changes.
"""

from __future__ import annotations

from collections import deque
from typing import Dict, Optional, Tuple

import numpy as np


class IntrinsicsEstimator:
    def __init__(self, history: int = 100):
        self.history = int(history)
        self._buf: deque = deque(maxlen=self.history)
        self.resolution: Optional[Tuple[int, int]] = None  # (width, height)

    def reset(self) -> None:
        self._buf.clear()
        self.resolution = None

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, K: np.ndarray, width: int, height: int) -> None:
        if self.resolution != (width, height):
            self.reset()
            self.resolution = (width, height)
        K = np.asarray(K, np.float64)
        if np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0:
            self._buf.append((K[0, 0], K[1, 1], K[0, 2], K[1, 2]))

    def estimate(self) -> Optional[np.ndarray]:
        if not self._buf:
            return None
        fx, fy, cx, cy = np.median(np.array(self._buf), axis=0)
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


class CameraIntrinsics:
    """Every camera's intrinsics: a frame's own (from its CameraInfo), else the
    running estimate of the model's answers for its camera."""

    def __init__(self, history: int = 100):
        self.history = int(history)
        self._estimators: Dict[str, IntrinsicsEstimator] = {}

    def clear(self) -> None:
        self._estimators = {}

    def estimator(self, camera: str) -> IntrinsicsEstimator:
        if camera not in self._estimators:
            self._estimators[camera] = IntrinsicsEstimator(self.history)
        return self._estimators[camera]

    def known(self, frame) -> Optional[np.ndarray]:
        """The frame's intrinsics, or its camera's estimate so far (None: neither)."""
        return frame.intrinsics if frame.intrinsics is not None else self.estimator(frame.camera).estimate()

    def learn(self, frame, K_model: np.ndarray) -> None:
        """The model's intrinsics for a frame without its own."""
        if frame.intrinsics is None:
            self.estimator(frame.camera).add(K_model, frame.width, frame.height)

    def publish(self, frame, K_model: np.ndarray) -> Tuple[np.ndarray, str]:
        """(intrinsics, "camera_info" | "estimated") for an answered frame."""
        if frame.intrinsics is not None:
            return np.asarray(frame.intrinsics, np.float64).copy(), "camera_info"
        self.learn(frame, K_model)
        return self.estimator(frame.camera).estimate(), "estimated"


# -- pose conditioning: external poses need intrinsics too -------------------

def conditioning(frames, intrinsics: CameraIntrinsics, world_mode: Optional[str], use_external: bool):
    """(intrinsics (S,3,3), c2w (S,4,4)) when a window of `frames` can be
    pose-conditioned: external poses and intrinsics for every view, and a world
    that is not the model's own."""
    if not use_external or world_mode == "model" or any(f.c2w_external is None for f in frames):
        return None
    Ks = [intrinsics.known(f) for f in frames]
    if any(K is None for K in Ks):
        return None  # the model needs both poses and intrinsics
    return (np.stack([np.asarray(K, np.float64) for K in Ks]),
            np.stack([np.asarray(f.c2w_external, np.float64) for f in frames]))


def bootstrap_intrinsics(model, frames, handles, intrinsics: CameraIntrinsics, world_mode: Optional[str],
                         use_external: bool) -> None:
    """External poses from the very first window on but no intrinsics yet (no
    CameraInfo): conditioning needs both, so ask the model once, unconditioned
    and without depth, for its intrinsics. Without this the world would
    silently become the model's frame instead of the odometry's."""
    from .checks import check_prediction

    if world_mode is not None or not use_external or any(f.c2w_external is None for f in frames):
        return
    if all(intrinsics.known(f) is not None for f in frames):
        return
    probe = model.predict(frames, handles, [])
    check_prediction(probe, frames, [])
    for c, f in enumerate(frames):
        intrinsics.learn(f, np.asarray(probe.intrinsics, np.float64)[c])
