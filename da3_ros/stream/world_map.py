"""A bounded voxel map of the world and a bounded trajectory buffer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1


def _pack(ijk: np.ndarray) -> np.ndarray:
    v = ijk.astype(np.int64) + _OFFSET
    return (v[:, 0] << (2 * _BITS)) | (v[:, 1] << _BITS) | v[:, 2]


class VoxelMap:
    """Voxel-downsampled coloured points: one point per occupied voxel (the mean
    of what fell in it), at most `max_points`; when over the cap, the voxels
    updated longest ago go first, then the least confident. Memory is
    O(max_points) whatever the stream length."""

    def __init__(self, voxel_size: float, max_points: int):
        self.voxel_size = float(voxel_size)
        self.max_points = int(max_points)
        self.clear()

    def clear(self) -> None:
        self._keys = np.zeros(0, np.int64)
        self._sum = np.zeros((0, 3), np.float64)  # xyz sums
        self._rgb = np.zeros((0, 3), np.float64)  # rgb sums
        self._n = np.zeros(0, np.float64)  # points per voxel
        self._conf = np.zeros(0, np.float32)  # max confidence seen
        self._tick = np.zeros(0, np.int64)  # last update

    def __len__(self) -> int:
        return len(self._keys)

    def insert(self, xyz: np.ndarray, rgb: np.ndarray, conf: np.ndarray, tick: int) -> None:
        xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
        if len(xyz) == 0:
            return
        ijk = np.floor(xyz / self.voxel_size)
        ok = np.all(np.abs(ijk) < _OFFSET - 1, axis=1) & np.all(np.isfinite(xyz), axis=1)
        xyz, ijk = xyz[ok], ijk[ok]
        rgb = np.asarray(rgb, np.float64).reshape(-1, 3)[ok]
        conf = np.asarray(conf, np.float32).reshape(-1)[ok]
        n_old = len(self._keys)
        keys = np.concatenate([self._keys, _pack(ijk)])
        uniq, inv = np.unique(keys, return_inverse=True)
        m = len(uniq)
        ones = np.ones(len(xyz))
        s = np.stack([np.bincount(inv, np.concatenate([self._sum[:, a], xyz[:, a]]), m) for a in range(3)], 1)
        c = np.stack([np.bincount(inv, np.concatenate([self._rgb[:, a], rgb[:, a]]), m) for a in range(3)], 1)
        n = np.bincount(inv, np.concatenate([self._n, ones]), m)
        cf = np.zeros(m, np.float32)
        np.maximum.at(cf, inv, np.concatenate([self._conf, conf]))
        tk = np.zeros(m, np.int64)
        tk[inv[:n_old]] = self._tick
        tk[inv[n_old:]] = tick
        # cap the running sums so an often-seen voxel still follows new data
        heavy = n > 64
        if np.any(heavy):
            f = 64.0 / n[heavy]
            s[heavy] *= f[:, None]
            c[heavy] *= f[:, None]
            n[heavy] = 64.0
        if m > self.max_points:
            keep = np.lexsort((cf, tk))[-self.max_points:]
            keep.sort()
            uniq, s, c, n, cf, tk = uniq[keep], s[keep], c[keep], n[keep], cf[keep], tk[keep]
        self._keys, self._sum, self._rgb, self._n, self._conf, self._tick = uniq, s, c, n, cf, tk

    def points(self) -> Tuple[np.ndarray, np.ndarray]:
        """(xyz (M,3) float32 world, rgb (M,3) uint8)."""
        if len(self._keys) == 0:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        xyz = (self._sum / self._n[:, None]).astype(np.float32)
        rgb = np.clip(np.round(self._rgb / self._n[:, None]), 0, 255).astype(np.uint8)
        return xyz, rgb

    def confidence(self) -> np.ndarray:
        return self._conf.copy()

    def rescale(self, factor: float) -> None:
        """Every point times `factor` (the world's unit changed); points that now
        share a voxel merge."""
        if len(self._keys) == 0:
            return
        xyz, rgb = self.points()
        conf, tick = self._conf.copy(), int(self._tick.max())
        self.clear()
        self.insert(xyz.astype(np.float64) * factor, rgb, conf, tick)


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
