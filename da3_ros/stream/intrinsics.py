"""A camera's intrinsics from the model's per-frame estimates.

A camera's intrinsics do not change, while the model's estimate wobbles from
frame to frame, so publish a running median (robust to a bad window) over the
last estimates; start over when the resolution changes.
"""

from __future__ import annotations

from collections import deque
from typing import Optional, Tuple

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
