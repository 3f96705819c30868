"""The world's one trajectory: a bounded ring buffer of answered poses and the
`Trajectory` it hands out (the path output, `~/save` and the writers read it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Trajectory:
    """Answered poses in order: stamps (N,) seconds, c2w (N,4,4) optical frame
    to world, the frames' indices (N,) and keyframe flags (N,).
    Unpacks as `stamps, c2w = streamer.trajectory()` (the writers' order)."""

    stamps: np.ndarray
    c2w: np.ndarray
    indices: np.ndarray
    keyframe: np.ndarray

    def __len__(self) -> int:
        return len(self.stamps)

    def __iter__(self):
        return iter((self.stamps, self.c2w))


class TrajectoryBuffer:
    """Ring buffer of at most `cap` poses (preallocated: 10,000 poses ~ 1.4 MB)."""

    def __init__(self, cap: int):
        self.cap = int(cap)
        self._stamps = np.zeros(self.cap, np.float64)
        self._c2w = np.zeros((self.cap, 4, 4), np.float64)
        self._idx = np.zeros(self.cap, np.int64)
        self._kf = np.zeros(self.cap, bool)
        self.clear()

    def clear(self) -> None:
        self._head = 0  # next write position
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, stamp: float, c2w: np.ndarray, index: int, keyframe: bool) -> None:
        i = self._head
        self._stamps[i], self._c2w[i], self._idx[i], self._kf[i] = stamp, c2w, index, keyframe
        self._head = (i + 1) % self.cap
        self._n = min(self._n + 1, self.cap)

    def rescale(self, factor: float) -> None:
        """Every position times `factor` (the world's unit changed)."""
        self._c2w[:, :3, 3] *= factor

    def get(self) -> Trajectory:
        order = (np.arange(self._n) + (self._head - self._n)) % self.cap
        return Trajectory(self._stamps[order].copy(), self._c2w[order].copy(), self._idx[order].copy(), self._kf[order].copy())
