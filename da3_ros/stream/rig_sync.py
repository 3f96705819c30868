"""Rig frames: the images of a rig's named cameras grouped by stamp
(`RigSynchronizer`), numpy only, no threads. A rig frame with a camera missing
is released after a bounded wait in stamp time (or when too many rig frames
wait), so a dead camera never stalls the others; memory stays bounded. Each
camera's stamps pass the stream's `Timeline` first (duplicates, outliers,
restarts). The streaming session (stream.session) is its one user."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .timeline import Timeline


# -- rig frames ---------------------------------------------------------------

@dataclass(frozen=True)
class RigView:
    """One camera's image in a rig frame. `data` is whatever the caller pushed
    (the decoded image, its message, ...)."""

    camera: str
    stamp: float
    data: Any


@dataclass(frozen=True)
class RigFrame:
    """Images of the rig's cameras taken at one instant.

    stamp: the stamp of its first view in the rig's camera order, seconds (as
        Streamer.push_rig takes a rig frame's stamp; each view keeps its own:
        outputs of a camera carry its image's stamp).
    views: camera name -> view, in the rig's camera order; cameras that did
        not deliver in time are listed in `missing`.
    """

    stamp: float
    views: Dict[str, RigView]
    missing: Tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


class _Open:
    """A rig frame still collecting views."""

    __slots__ = ("anchor", "views")

    def __init__(self, anchor: float):
        self.anchor = anchor  # stamp of its first view
        self.views: Dict[str, RigView] = {}


class RigSynchronizer:
    """Groups images of named cameras into rig frames by stamp.

    push(camera, stamp, data) returns the rig frames this image completes or
    releases, oldest first. A rig frame is released

    * when every camera delivered a view or is known to be out (a rig frame
      already went without it and nothing came from it since);
    * else once each camera in it delivered an image more than `max_wait`
      seconds (stamp time) newer: a late camera is waited for that long, then
      counted out, so a dead camera delays one rig frame, not every one;
    * else when more than `max_pending` rig frames wait (the oldest goes first).
    Releasing a rig frame releases every older one (they can no longer complete:
    each camera's images arrive in stamp order). The cameras are assumed to share
    one clock and one rate.

    Each camera's stamps first pass a `Timeline` (the stream's one rule for
    duplicates, outlier stamps and restarts of time): a camera's duplicate or
    outlier image is dropped and counted. When a camera's time restarts for real
    (a looping bag), the rig frames of the old timeline still waiting go out and
    grouping follows the new one; whether the world resets is decided
    downstream, by the Streamer's Timeline on the rig frames' stamps. An image
    whose rig frame already went out is dropped as a late view.
    Stamps are seconds (header stamps); no wall clock is read.
    """

    #: why images were dropped: the Timeline's reasons, and a view too late for its rig frame
    DROP_REASONS = ("duplicate_stamp", "stamp_backwards_outlier", "stamp_forward_outlier", "late_view")

    def __init__(self, cameras: Sequence[str], tolerance: float = 0.005, max_wait: float = 0.1,
                 max_pending: int = 4, max_forward_jump_s: float = 10.0):
        cameras = tuple(str(c) for c in cameras)
        if not cameras or len(set(cameras)) != len(cameras) or not all(cameras):
            raise ValueError(f"cameras must be distinct non-empty names, got {cameras!r}")
        if not tolerance >= 0 or not max_wait > 0 or int(max_pending) < 1:
            raise ValueError("need tolerance >= 0 s, max_wait > 0 s and max_pending >= 1")
        self.cameras = cameras
        #: the largest stamp difference (seconds) between two views of one rig frame
        self.tolerance = float(tolerance)
        #: how long (seconds of stamp time) a rig frame waits for a late camera
        self.max_wait = float(max_wait)
        #: at most this many rig frames wait for views (memory: max_pending x cameras images)
        self.max_pending = int(max_pending)
        self._timelines: Dict[str, Timeline[RigView]] = {c: Timeline(max_forward_jump_s) for c in cameras}
        # diagnostics, cumulative over resets
        self.n_complete = 0
        self.n_incomplete = 0
        self.restarts = 0
        self.dropped: Dict[str, int] = {r: 0 for r in self.DROP_REASONS}
        self.missing_counts: Dict[str, int] = {c: 0 for c in cameras}
        self._reset_grouping()

    def reset(self) -> None:
        """Forget waiting rig frames and every camera's timeline (the counters stay)."""
        self._reset_grouping()
        for t in self._timelines.values():
            t.clear()

    def _reset_grouping(self) -> None:
        self._pending: List[_Open] = []
        self._released: Optional[float] = None  # stamp of the newest released rig frame
        self._last: Dict[str, float] = {}  # camera -> stamp of its last grouped image
        self._out: set = set()  # cameras a released rig frame went without, silent since

    @property
    def pending(self) -> int:
        """Rig frames waiting for views now."""
        return len(self._pending)

    @property
    def cameras_out(self) -> Tuple[str, ...]:
        """Cameras not waited for now (silent since a rig frame went without them)."""
        return tuple(c for c in self.cameras if c in self._out)

    def stats(self) -> Dict[str, int]:
        """Counters for diagnostics: rig frames released complete / incomplete,
        time restarts followed, rig frames waiting, images dropped by reason
        (dropped_<reason>), released rig frames without each camera (missing_<camera>)."""
        out = {"complete": self.n_complete, "incomplete": self.n_incomplete, "restarts": self.restarts,
               "pending": self.pending}
        out.update({f"dropped_{r}": n for r, n in self.dropped.items()})
        out.update({f"missing_{c}": n for c, n in self.missing_counts.items()})
        return out

    def push(self, camera: str, stamp: float, data: Any = None, received: Optional[float] = None) -> List[RigFrame]:
        """One camera's image (stamp and arrival time `received`, seconds; None
        offline) -> the rig frames released by it."""
        if camera not in self._timelines:
            raise KeyError(f"unknown camera {camera!r}; the rig has {self.cameras}")
        stamp = float(stamp)
        if not np.isfinite(stamp):
            raise ValueError("stamp is not finite")
        decision = self._timelines[camera].decide(stamp, RigView(camera, stamp, data), received)
        for reason in decision.dropped:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
        out: List[RigFrame] = []
        if decision.restart:
            out += self._follow_restart(decision.take[0].stamp)
        for view in decision.take:
            out += self._group(view)
        return out

    def flush(self) -> List[RigFrame]:
        """Release every waiting rig frame (end of input). An image a camera's
        Timeline holds (a stamp jump not yet judged) stays unjudged."""
        return self._release(len(self._pending))

    # -- internals ----------------------------------------------------------
    def _follow_restart(self, stamp: float) -> List[RigFrame]:
        """A camera's time restarted at `stamp`: rig frames of the old timeline
        (later by more than max_wait) go out now and grouping starts over. The
        other cameras' restarts that follow find it done."""
        horizon = stamp + self.max_wait
        newest = max([f.anchor for f in self._pending] + ([self._released] if self._released is not None else []),
                     default=-np.inf)
        if newest <= horizon:
            return []
        self.restarts += 1
        keep = [f for f in self._pending if f.anchor <= horizon]
        self._pending = [f for f in self._pending if f.anchor > horizon]
        out = self.flush()
        self._pending = keep
        self._released = None
        self._out.clear()
        return out

    def _group(self, view: RigView) -> List[RigFrame]:
        if self._released is not None and view.stamp <= self._released + self.tolerance:
            self.dropped["late_view"] += 1  # its rig frame went without it
            self._out.discard(view.camera)  # but the camera lives: wait for it again
            return []
        self._last[view.camera] = view.stamp
        self._out.discard(view.camera)
        self._open_for(view.camera, view.stamp).views[view.camera] = view
        return self._release_ready()

    def _open_for(self, camera: str, stamp: float) -> _Open:
        """The waiting rig frame nearest in stamp (within tolerance) that lacks
        this camera, else a new one."""
        best, best_dt = None, None
        for f in self._pending:
            dt = abs(stamp - f.anchor)
            if camera not in f.views and dt <= self.tolerance and (best_dt is None or dt < best_dt):
                best, best_dt = f, dt
        if best is None:
            best = _Open(stamp)
            i = 0
            while i < len(self._pending) and self._pending[i].anchor <= stamp:
                i += 1
            self._pending.insert(i, best)
        return best

    def _ready(self, f: _Open) -> bool:
        if all(c in f.views or c in self._out for c in self.cameras):
            return True
        # a late camera is waited for until every camera in the rig frame went on by max_wait
        return min(self._last[c] for c in f.views) > f.anchor + self.max_wait

    def _release_ready(self) -> List[RigFrame]:
        out: List[RigFrame] = []
        while self._pending:
            n = max([i + 1 for i, f in enumerate(self._pending) if self._ready(f)] + [len(self._pending) - self.max_pending])
            if n <= 0:
                break
            out += self._release(n)  # may count a camera out: newer rig frames stop waiting for it
        return out

    def _release(self, n: int) -> List[RigFrame]:
        out = []
        for f in self._pending[:n]:
            views = {c: f.views[c] for c in self.cameras if c in f.views}
            missing = tuple(c for c in self.cameras if c not in f.views)
            for c in missing:
                self.missing_counts[c] += 1
                if not self._last.get(c, -np.inf) > f.anchor + self.tolerance:
                    self._out.add(c)  # gone without it, and nothing newer came from it
            if missing:
                self.n_incomplete += 1
            else:
                self.n_complete += 1
            out.append(RigFrame(next(iter(views.values())).stamp, views, missing))
            self._released = f.anchor if self._released is None else max(self._released, f.anchor)
        del self._pending[:n]
        return out
