"""A bounded voxel map of the world (O(new points) per insert)."""

from __future__ import annotations

from typing import Tuple

import numpy as np

_BITS = 21
_OFFSET = 1 << (_BITS - 1)
#: a voxel's running sums are capped at this many points, so an often-seen
#: voxel still follows new data
_MAX_WEIGHT = 64.0
_EMPTY = -1  # a hash slot never used (a row's key / tick: a free row)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier
# row layout of VoxelMap._data: xyz sums, rgb sums, point count, max confidence
_XYZ, _RGB, _N, _CONF = slice(0, 3), slice(3, 6), 6, 7


def _pack(ijk: np.ndarray) -> np.ndarray:
    v = ijk.astype(np.int64) + _OFFSET
    return (v[:, 0] << (2 * _BITS)) | (v[:, 1] << _BITS) | v[:, 2]


class VoxelMap:
    """Voxel-downsampled coloured points: one point per occupied voxel (the mean
    of what fell in it, over at most the last ~64 points), at most `max_points`;
    when over the cap, the voxels updated longest ago go first, then the least
    confident. Memory is O(max_points) whatever the stream length.

    An insert costs O(its own points) whatever the map's size: voxels live in
    rows of one array, found through an open-addressing hash table of their
    keys (linear probing, vectorised); eviction walks a queue of (row, tick)
    updates oldest first, skipping entries a later update made stale. The table
    and the queue are rebuilt when stale entries reach the live ones: amortised
    O(1) per point.
    """

    def __init__(self, voxel_size: float, max_points: int):
        self.voxel_size = float(voxel_size)
        self.max_points = int(max_points)
        self.clear()

    def clear(self) -> None:
        self._data = np.zeros((0, 8), np.float64)  # row -> xyz sum, rgb sum, n, max confidence
        self._key = np.zeros(0, np.int64)  # row -> voxel key (_EMPTY: free row)
        self._tick = np.zeros(0, np.int64)  # row -> tick of the last update (_EMPTY: free row)
        self._free = np.zeros(0, np.int64)  # stack of free rows below _high
        self._n_free = 0
        self._high = 0  # rows [0, _high) have been used
        self._size = 0
        self._last_tick = np.iinfo(np.int64).min
        self._new_table(1 << 10)
        # update queue: rows and the tick they were updated at, in tick order
        self._q_row = np.zeros(1 << 10, np.int64)
        self._q_tick = np.zeros(1 << 10, np.int64)
        self._head = self._tail = 0
        self._sorted_end = -1  # queue[head:_sorted_end] holds the oldest tick sorted by confidence

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the map's arrays."""
        return sum(a.nbytes for a in (self._data, self._key, self._tick, self._free, self._slot_key,
                                      self._slot_row, self._q_row, self._q_tick))

    # ------------------------------------------------------------ public
    def insert(self, xyz: np.ndarray, rgb: np.ndarray, conf: np.ndarray, tick: int) -> None:
        """Add points (N,3) world, colours (N,3) 0..255, confidences (N,) seen at
        `tick` (a counter that does not go back: an earlier one counts as the
        latest seen)."""
        xyz = np.asarray(xyz, np.float64).reshape(-1, 3)
        if len(xyz) == 0:
            return
        ijk = np.floor(xyz / self.voxel_size)
        big = np.abs(ijk)  # NaN and inf compare False: dropped with the out-of-range points
        ok = (big[:, 0] < _OFFSET - 1) & (big[:, 1] < _OFFSET - 1) & (big[:, 2] < _OFFSET - 1)
        idx = np.flatnonzero(ok)
        if len(idx) == 0:
            return
        keys = _pack(ijk[idx])
        order = np.argsort(keys)
        keys, idx = keys[order], idx[order]  # sorted by voxel
        first = np.empty(len(keys), bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1  # voxel of each point
        m = len(starts)
        p, c = xyz[idx], np.asarray(rgb).reshape(-1, 3)[idx]
        agg = np.empty((m, 8), np.float64)
        for axis in range(3):
            agg[:, axis] = np.bincount(group, p[:, axis], m)
            agg[:, 3 + axis] = np.bincount(group, c[:, axis], m)
        agg[:, _N] = np.diff(np.append(starts, len(keys)))
        agg[:, _CONF] = np.maximum.reduceat(np.asarray(conf, np.float32).reshape(-1)[idx], starts)
        self._merge(keys[starts], agg, max(int(tick), self._last_tick))

    def points(self) -> Tuple[np.ndarray, np.ndarray]:
        """(xyz (M,3) float32 world, rgb (M,3) uint8)."""
        d = self._data[self._rows()]
        n = d[:, _N:_N + 1]
        return (d[:, _XYZ] / n).astype(np.float32), np.clip(np.round(d[:, _RGB] / n), 0, 255).astype(np.uint8)

    def confidence(self) -> np.ndarray:
        """(M,) float32, the highest confidence seen per voxel (the order of points())."""
        return self._data[self._rows(), _CONF].astype(np.float32)

    def ticks(self) -> np.ndarray:
        """(M,) the tick of each voxel's last update (the order of points())."""
        return self._tick[self._rows()].copy()

    def counts(self) -> np.ndarray:
        """(M,) points averaged per voxel (capped at 64; the order of points())."""
        return self._data[self._rows(), _N].copy()

    def rescale(self, factor: float) -> None:
        """Every point times `factor` (the world's unit changed); points that now
        share a voxel merge (weighted by their counts, newest tick, highest
        confidence). O(map size): a rare event."""
        rows = self._rows()
        if len(rows) == 0:
            return
        d = self._data[rows].copy()
        d[:, _XYZ] *= factor
        ticks = self._tick[rows]
        self.clear()
        mean = d[:, _XYZ] / d[:, _N:_N + 1]
        ijk = np.floor(mean / self.voxel_size)
        ok = np.all(np.abs(ijk) < _OFFSET - 1, axis=1) & np.all(np.isfinite(mean), axis=1)
        keys = _pack(ijk[ok])
        d, ticks = d[ok], ticks[ok]
        uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
        agg = np.zeros((len(uniq), 8))
        for a in range(_N + 1):
            agg[:, a] = np.bincount(inv, d[:, a], len(uniq))
        agg[:, _CONF] = -np.inf
        np.maximum.at(agg[:, _CONF], inv, d[:, _CONF])
        tk = np.full(len(uniq), np.iinfo(np.int64).min)
        np.maximum.at(tk, inv, ticks)
        # replay the merged voxels tick by tick (oldest first) so the age queue is in order
        for t in np.unique(tk):
            sel = tk == t
            self._merge(uniq[sel], agg[sel], int(t))

    # ------------------------------------------------------------ internals
    def _rows(self) -> np.ndarray:
        return np.flatnonzero(self._key[:self._high] != _EMPTY)

    def _new_table(self, capacity: int) -> None:
        self._slot_key = np.full(capacity, _EMPTY, np.int64)
        self._slot_row = np.zeros(capacity, np.int64)
        self._shift = np.uint64(64 - (capacity.bit_length() - 1))
        self._mask = capacity - 1
        self._occupied = 0  # slots holding a key (live or dead)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        return ((keys.view(np.uint64) * _GOLDEN) >> self._shift).astype(np.int64)

    def _lookup(self, keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(row per key or -1, slot per key: its own slot if it has one (live or
        dead), else -1). Keys are distinct."""
        rows = np.full(len(keys), -1, np.int64)
        slots = np.full(len(keys), -1, np.int64)
        pending = np.arange(len(keys))
        pos = self._home(keys)
        while len(pending):
            s = pos[pending]
            sk = self._slot_key[s]
            hit = sk == keys[pending]
            done = hit | (sk == _EMPTY)
            if np.any(hit):
                idx, sh = pending[hit], s[hit]
                slots[idx] = sh
                r = self._slot_row[sh]
                alive = self._key[r] == keys[idx]  # else a dead slot: the voxel was evicted
                rows[idx[alive]] = r[alive]
            pending = pending[~done]
            pos[pending] = (pos[pending] + 1) & self._mask
        return rows, slots

    def _claim(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Put keys known to be absent from the table into free slots: empty ones,
        or dead ones (their key's voxel was evicted)."""
        pos = self._home(keys)
        pending = np.arange(len(keys))
        while len(pending):
            s = pos[pending]
            sk = self._slot_key[s]
            empty = sk == _EMPTY
            free = empty | (self._key[self._slot_row[s]] != sk)
            cand, cs = pending[free], s[free]
            self._slot_key[cs] = keys[cand]  # several keys may race for a slot:
            won = self._slot_key[cs] == keys[cand]  # the one written holds it
            self._slot_row[cs[won]] = rows[cand[won]]
            self._occupied += int(np.count_nonzero(empty[free][won]))
            placed = np.zeros(len(pending), bool)
            placed[np.flatnonzero(free)[won]] = True
            pending = pending[~placed]
            pos[pending] = (pos[pending] + 1) & self._mask

    def _alloc(self, k: int) -> np.ndarray:
        take = min(k, self._n_free)
        rows = self._free[self._n_free - take:self._n_free].copy()
        self._n_free -= take
        extra = k - take
        if self._high + extra > len(self._key):
            cap = max(2 * len(self._key), self._high + extra, 1024)
            self._data = np.concatenate([self._data, np.zeros((cap - len(self._data), 8))])
            self._key = np.concatenate([self._key, np.full(cap - len(self._key), _EMPTY, np.int64)])
            self._tick = np.concatenate([self._tick, np.full(cap - len(self._tick), _EMPTY, np.int64)])
        rows = np.concatenate([rows, np.arange(self._high, self._high + extra)])
        self._high += extra
        return rows

    def _merge(self, keys: np.ndarray, agg: np.ndarray, tick: int) -> None:
        """Voxels `keys` (distinct) gain the sums `agg` (rows as _data's) at `tick`."""
        self._last_tick = tick
        rows, slots = self._lookup(keys)
        new = rows < 0
        rn = self._alloc(int(np.count_nonzero(new)))
        rows[new] = rn
        requeue = rows[self._tick[rows] != tick]  # new, or last queued at an earlier tick
        d = self._data[rows]
        d[new] = 0.0
        d[new, _CONF] = -np.inf
        d[:, :_N + 1] += agg[:, :_N + 1]
        np.maximum(d[:, _CONF], agg[:, _CONF], out=d[:, _CONF])
        heavy = d[:, _N] > _MAX_WEIGHT
        if np.any(heavy):
            d[heavy, :_N] *= (_MAX_WEIGHT / d[heavy, _N])[:, None]
            d[heavy, _N] = _MAX_WEIGHT
        self._data[rows] = d
        self._tick[rows] = tick
        kn = keys[new]
        self._key[rn] = kn
        self._size += len(rn)
        # new voxels: their own dead slot if they had one, else a free slot
        own = slots[new] >= 0
        self._slot_row[slots[new][own]] = rn[own]
        if self._occupied + int(np.count_nonzero(~own)) > (self._mask + 1) // 2:
            self._rehash()  # the table would be over half full: a larger one, with every live key
        else:
            self._claim(kn[~own], rn[~own])
        self._enqueue(requeue, tick)
        if self._size > self.max_points:
            self._evict(self._size - self.max_points)

    def _enqueue(self, rows: np.ndarray, tick: int) -> None:
        if self._tail + len(rows) > len(self._q_row):
            self._compact_queue(len(rows))
        self._q_row[self._tail:self._tail + len(rows)] = rows
        self._q_tick[self._tail:self._tail + len(rows)] = tick
        self._tail += len(rows)

    def _compact_queue(self, room: int) -> None:
        """Drop stale queue entries (the row was updated again or evicted since),
        keeping the order; grow the buffer when live entries fill half of it."""
        r, t = self._q_row[self._head:self._tail], self._q_tick[self._head:self._tail]
        live = self._tick[r] == t
        r, t = r[live], t[live]
        n = len(r)
        cap = len(self._q_row)
        if 2 * (n + room) > cap:
            cap = max(2 * (n + room), 2 * cap)
            self._q_row = np.zeros(cap, np.int64)
            self._q_tick = np.zeros(cap, np.int64)
        self._q_row[:n], self._q_tick[:n] = r, t
        self._head, self._tail = 0, n
        self._sorted_end = -1

    def _evict(self, count: int) -> None:
        """Drop `count` voxels: oldest tick first, then least confident.

        Every live row has exactly one live queue entry (a row is queued again only
        when its tick changes; an evicted row's entries of that tick leave the queue
        with it), so no row is dropped twice. The oldest tick's entries, once
        sorted by confidence, stay sorted (`_sorted_end`): later evictions from
        them take a prefix."""
        while count > 0 and self._head < self._tail:
            t0 = self._q_tick[self._head]
            end = self._head + int(np.searchsorted(self._q_tick[self._head:self._tail], t0, side="right"))
            if self._sorted_end == end:
                stop = min(end, self._head + 2 * count + 64)
                r = self._q_row[self._head:stop]
                live = np.flatnonzero(self._tick[r] == t0)[:count]
                gone = r[live]
                self._head = self._head + int(live[-1]) + 1 if len(live) else stop
            else:
                r = self._q_row[self._head:end]
                r = r[self._tick[r] == t0]  # the live entries of the oldest tick
                if len(r) > count:
                    r = r[np.argsort(self._data[r, _CONF], kind="stable")]
                    gone, keep = r[:count], r[count:]
                    self._head = end - len(keep)  # the survivors stay queued, least confident first
                    self._q_row[self._head:end] = keep
                    self._sorted_end = end
                else:
                    gone = r
                    self._head = end
            self._key[gone] = _EMPTY
            self._tick[gone] = _EMPTY
            if self._n_free + len(gone) > len(self._free):
                grown = np.zeros(max(self._n_free + len(gone), 2 * len(self._free)), np.int64)
                grown[:self._n_free] = self._free[:self._n_free]
                self._free = grown
            self._free[self._n_free:self._n_free + len(gone)] = gone
            self._n_free += len(gone)
            self._size -= len(gone)
            count -= len(gone)

    def _rehash(self) -> None:
        """A fresh table for the live keys (the dead slots of evicted voxels gone),
        at most a quarter full."""
        rows = self._rows()
        capacity = 1 << 10
        while capacity < 4 * max(len(rows), 1):
            capacity <<= 1
        self._new_table(capacity)
        self._claim(self._key[rows], rows)
