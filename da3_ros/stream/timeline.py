"""Which frames continue the stream's timeline: the one place that decides
whether a stamp is a duplicate, an outlier, or a real restart of time.

A camera driver glitch, a delayed message or a corrupt stamp must not erase the
world; a looping bag or a restarted driver must. One frame cannot tell the two
apart, the next one can: a frame that jumps (back, or ahead, by more than a few
frame intervals: `jump_s`) is held, and the next frame decides. A frame only a
little older than the last one (a late, out-of-order message) is dropped at once.

  * it continues the held frame's timeline (newer than the held one, and still
    older than the last accepted one / still past the jump): time really
    restarted (backwards: the world resets) or jumped ahead (the world is kept);
    the held frame and the new one are both taken;
  * it continues the old timeline: the held frame was an outlier, dropped and
    counted; the new frame is taken.

Holding costs a restarted stream one frame of latency, once.

A live front end also says when each frame arrived (`received`, any clock that
only runs forward, seconds). A step forward that the arrival clock made too (within
`jump_s`) is not a jump, however long: a busy node that skipped frames, or a camera that
paused, still continues its timeline. Without arrival times (files) the stamps
alone decide.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Generic, List, Optional, TypeVar

import numpy as np

T = TypeVar("T")


class Verdict:
    """How a stamp relates to the timeline (Timeline.decide's `verdict`)."""

    #: continues the timeline: take it
    TAKE = "take"
    #: the same stamp as the last taken frame: dropped (answering it twice would
    #: put two poses at one stamp)
    DUPLICATE = "duplicate"
    #: a jump: kept aside until the next frame says which timeline is real
    HELD = "held"
    #: a little older than the last taken frame (late, out of order): dropped
    LATE = "late"


@dataclass
class Decision(Generic[T]):
    """What to do now: `take` lists the items to take, in order; `restart` is
    True when time went backwards for real and the world must be reset before
    taking them; `dropped` says why each dropped frame was dropped
    ("duplicate_stamp", "stamp_backwards_outlier", "stamp_forward_outlier")."""

    verdict: str
    take: List[T]
    restart: bool = False
    dropped: List[str] = field(default_factory=list)


class Timeline(Generic[T]):
    """Stamps in seconds; `item` is whatever the caller takes (a Frame).

    A step counts as a jump when it is longer than `JUMP_INTERVALS` times the
    median of the recent frame intervals (at least `MIN_JUMP_S`, at most
    `max_forward_jump_s`): a 30 Hz camera's frame stamped 0.5 s ahead is a jump,
    a 1 Hz camera's is not."""

    #: a jump is this many typical frame intervals ...
    JUMP_INTERVALS = 10
    #: ... but never less than this (seconds)
    MIN_JUMP_S = 0.1

    def __init__(self, max_forward_jump_s: float = 10.0):
        self.max_forward_jump_s = float(max_forward_jump_s)
        self.last: Optional[float] = None  # stamp of the last taken item
        self._last_received: Optional[float] = None  # its arrival time, when told
        self._held: Optional[T] = None
        self._held_stamp = 0.0
        self._held_received: Optional[float] = None
        self._intervals: Deque[float] = deque(maxlen=15)

    def clear(self) -> None:
        self.last = None
        self._last_received = None
        self._held = None
        self._intervals.clear()

    def restart_at(self, stamp: float, received: Optional[float] = None) -> None:
        """After a reset for a restart of time: the timeline goes on from `stamp`."""
        self.last, self._last_received = float(stamp), received

    @property
    def jump_s(self) -> float:
        """The step (seconds) beyond which a stamp is held as a possible jump."""
        typical = float(np.median(self._intervals)) if self._intervals else self.max_forward_jump_s
        return min(self.max_forward_jump_s, max(self.JUMP_INTERVALS * typical, self.MIN_JUMP_S))

    def _is_jump(self, stamp: float, received: Optional[float]) -> bool:
        if self.last is None:
            return False
        step, jump_s = stamp - self.last, self.jump_s
        if abs(step) <= jump_s:
            return False
        if step < 0 or received is None or self._last_received is None:
            return True  # time going back is never excused (a bag recorded on sim time restarts both)
        return abs(step - (received - self._last_received)) > jump_s  # the arrival clock did not step too

    def _take(self, stamp: float, received: Optional[float]) -> None:
        if self.last is not None and stamp > self.last:
            self._intervals.append(stamp - self.last)
        self.last, self._last_received = stamp, received

    def _hold(self, stamp: float, item: T, received: Optional[float]) -> None:
        self._held, self._held_stamp, self._held_received = item, stamp, received

    def decide(self, stamp: float, item: T, received: Optional[float] = None) -> Decision[T]:
        """What to do with `item` stamped `stamp` (seconds) that arrived at
        `received` (seconds on a forward-only clock; None: unknown)."""
        if self._held is not None:
            return self._resolve(stamp, item, received)
        if self.last is not None and stamp == self.last:
            return Decision(Verdict.DUPLICATE, [], dropped=["duplicate_stamp"])
        if self._is_jump(stamp, received):
            self._hold(stamp, item, received)
            return Decision(Verdict.HELD, [])
        if self.last is not None and stamp < self.last:  # a little late: out of order, not a restart
            return Decision(Verdict.LATE, [], dropped=["stamp_backwards_outlier"])
        self._take(stamp, received)
        return Decision(Verdict.TAKE, [item])

    def _resolve(self, stamp: float, item: T, received: Optional[float]) -> Decision[T]:
        held, h, last = self._held, self._held_stamp, self.last
        assert last is not None
        backwards = h < last
        if stamp == h:  # the held frame again
            return Decision(Verdict.DUPLICATE, [], dropped=["duplicate_stamp"])
        follows_held = h < stamp < last if backwards else stamp > h
        self._held = None
        if follows_held:
            if backwards:
                self._intervals.clear()  # a new timeline
            self.last, self._last_received = h, self._held_received
            self._take(stamp, received)
            return Decision(Verdict.TAKE, [held, item], restart=backwards)
        outlier = "stamp_backwards_outlier" if backwards else "stamp_forward_outlier"
        # the old timeline goes on (or a second jump: that one is judged afresh)
        if stamp == last:
            return Decision(Verdict.DUPLICATE, [], dropped=[outlier, "duplicate_stamp"])
        if self._is_jump(stamp, received):
            self._hold(stamp, item, received)
            return Decision(Verdict.HELD, [], dropped=[outlier])
        if stamp < last:
            return Decision(Verdict.LATE, [], dropped=[outlier, "stamp_backwards_outlier"])
        self._take(stamp, received)
        return Decision(Verdict.TAKE, [item], dropped=[outlier])
