"""The world map's content against a brute-force reference: per-voxel means,
counts, confidences and ages after random inserts, with eviction, repeated
ticks, an insert larger than the cap, and a rescale."""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import pytest

from da3_ros.stream.world_map import VoxelMap

MAX_WEIGHT = 64.0


class ReferenceMap:
    """The map's definition, one voxel at a time (a dict)."""

    def __init__(self, voxel: float, cap: int):
        self.voxel, self.cap = voxel, cap
        self.v: Dict[Tuple[int, int, int], list] = {}  # key -> [xyz sum, rgb sum, n, conf, tick]

    def insert(self, xyz, rgb, conf, tick):
        batch: Dict[Tuple[int, int, int], list] = {}
        for p, c, f in zip(xyz, rgb, conf):
            if not np.all(np.isfinite(p)):
                continue
            k = tuple(int(a) for a in np.floor(p / self.voxel))
            b = batch.setdefault(k, [np.zeros(3), np.zeros(3), 0.0, -np.inf])
            b[0] = b[0] + p
            b[1] = b[1] + c
            b[2] += 1
            b[3] = max(b[3], float(f))
        for k, (s, c, n, f) in batch.items():
            e = self.v.setdefault(k, [np.zeros(3), np.zeros(3), 0.0, -np.inf, tick])
            e[0], e[1], e[2], e[3], e[4] = e[0] + s, e[1] + c, e[2] + n, max(e[3], f), tick
            if e[2] > MAX_WEIGHT:  # the running sums follow new data
                e[0], e[1], e[2] = e[0] * MAX_WEIGHT / e[2], e[1] * MAX_WEIGHT / e[2], MAX_WEIGHT
        if len(self.v) > self.cap:  # oldest first, then least confident
            order = sorted(self.v, key=lambda k: (self.v[k][4], self.v[k][3]))
            for k in order[:len(self.v) - self.cap]:
                del self.v[k]

    def table(self):
        """Rows (mean xyz, mean rgb, n, conf, tick), sorted by mean."""
        rows = np.array([[*(e[0] / e[2]), *(e[1] / e[2]), e[2], e[3], e[4]] for e in self.v.values()]).reshape(-1, 9)
        return by_point(rows)


def by_point(rows):
    """Rows sorted by their point as float32 (what the map returns)."""
    p = rows[:, :3].astype(np.float32)
    return rows[np.lexsort(p.T[::-1])]


def map_table(m: VoxelMap):
    xyz, _ = m.points()
    d = m._data[m._rows()]  # the unrounded colour means
    rows = np.column_stack([xyz.astype(np.float64), d[:, 3:6] / d[:, 6:7], m.counts(), m.confidence(), m.ticks()])
    return by_point(rows)


def check_same(m: VoxelMap, ref: ReferenceMap):
    got, want = map_table(m), ref.table()
    assert len(m) == len(got) == len(want)
    np.testing.assert_allclose(got[:, :3], want[:, :3], rtol=0, atol=1e-6)  # float32 points
    np.testing.assert_allclose(got[:, 3:6], want[:, 3:6], rtol=1e-9)
    np.testing.assert_array_equal(got[:, 6], want[:, 6])
    np.testing.assert_array_equal(got[:, 7], want[:, 7].astype(np.float32))
    np.testing.assert_array_equal(got[:, 8], want[:, 8])


def random_batch(rng, i):
    """Points mostly in a small box (voxels seen again and again, counts past the
    cap of 64), sometimes spread wide (many new voxels: eviction), a few NaN."""
    n = int(rng.integers(1, 400))
    if i % 5 == 4:
        xyz = rng.uniform(-2.0, 2.0, (n, 3))
    else:
        xyz = rng.uniform(-0.3, 0.3, (n, 3)) + 0.05 * i
    xyz[rng.random(n) < 0.02] = np.nan
    rgb = rng.integers(0, 256, (n, 3)).astype(np.float64)
    conf = rng.uniform(1.0, 10.0, n).astype(np.float32)
    return xyz, rgb, conf


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cap", [50, 700, 100_000])
def test_inserts_match_reference(seed, cap):
    rng = np.random.default_rng(seed)
    voxel = 0.1
    m, ref = VoxelMap(voxel, cap), ReferenceMap(voxel, cap)
    tick = 0
    for i in range(80):
        tick += int(rng.integers(0, 2))  # some ticks repeat (several results of one window)
        xyz, rgb, conf = random_batch(rng, i)
        m.insert(xyz, rgb, conf, tick)
        ref.insert(xyz, rgb, conf, tick)
        check_same(m, ref)
    if cap < 1000:
        assert len(m) == cap  # saturated: every insert evicted


def test_clear_and_reuse():
    rng = np.random.default_rng(5)
    m, ref = VoxelMap(0.1, 300), ReferenceMap(0.1, 300)
    for i in range(30):
        m.insert(*random_batch(rng, i), i)
    m.clear()
    assert len(m) == 0 and m.points()[0].shape == (0, 3)
    for i in range(30):
        batch = random_batch(rng, i)
        m.insert(*batch, i)
        ref.insert(*batch, i)
    check_same(m, ref)


def test_rescale_moves_and_merges():
    rng = np.random.default_rng(3)
    m = VoxelMap(0.1, 10_000)
    for i in range(20):
        m.insert(*random_batch(rng, i), i)
    before = map_table(m)
    m.rescale(3.0)  # scaled up: no two voxels merge, every point x3
    after = map_table(m)
    np.testing.assert_allclose(after[:, :3], 3.0 * before[:, :3], rtol=1e-6)
    np.testing.assert_array_equal(after[:, 6:], before[:, 6:])
    n_before = len(m)
    m.rescale(1 / 30.0)  # 10x below the original: voxels merge, weighted by their counts
    assert len(m) < n_before
    # reference: each original voxel as one point at its mean / 10, weighted by its count
    ref: Dict[tuple, list] = {}
    for row, k in zip(before, map(tuple, np.floor((before[:, :3] / 10.0) / 0.1).astype(int))):
        e = ref.setdefault(k, [np.zeros(3), 0.0, -np.inf, -1])
        e[0] = e[0] + row[:3] / 10.0 * row[6]
        e[1] += row[6]
        e[2] = max(e[2], row[7])
        e[3] = max(e[3], row[8])
    want = np.array([[*(e[0] / e[1]), min(e[1], MAX_WEIGHT), e[2], e[3]] for e in ref.values()])
    want = by_point(want)
    got = map_table(m)
    assert len(got) == len(want)
    np.testing.assert_allclose(got[:, :3], want[:, :3], atol=1e-6)
    np.testing.assert_array_equal(got[:, 6], want[:, 3])
    np.testing.assert_array_equal(got[:, 7], want[:, 4].astype(np.float32))
    np.testing.assert_array_equal(got[:, 8], want[:, 5])


def test_memory_stays_bounded_at_the_cap():
    """A saturated map keeps evicting and re-adding: its arrays stop growing."""
    rng = np.random.default_rng(7)
    m = VoxelMap(0.05, 2000)
    sizes = []
    for i in range(600):
        xyz = rng.uniform(-1, 1, (500, 3)) + np.array([0.02 * i, 0, 0])
        m.insert(xyz, rng.integers(0, 256, (500, 3)), rng.uniform(1, 3, 500), i)
        if i in (299, 599):
            sizes.append(m.nbytes)
    assert len(m) == 2000
    assert sizes[1] <= sizes[0], sizes
