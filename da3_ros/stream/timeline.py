"""Which frames continue the stream's timeline: the one place that decides
whether a stamp is a duplicate, an outlier, or a real restart of time.

A camera driver glitch, a delayed message or a corrupt stamp must not erase the
world; a looping bag or a restarted driver must. One frame cannot tell the two
apart, the next one can: a frame older than the last accepted one (or newer by
more than `max_forward_jump_s`) is held, and the next frame decides.

  * it continues the held frame's timeline (newer than the held one, and still
    older than the last accepted one / still past the jump): time really
    restarted (backwards: the world resets) or jumped ahead (the world is kept);
    the held frame and the new one are both taken;
  * it continues the old timeline: the held frame was an outlier, dropped and
    counted; the new frame is taken.

Holding costs a restarted stream one frame of latency, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, List, Optional, TypeVar

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
    """Stamps in seconds; `item` is whatever the caller takes (a Frame)."""

    def __init__(self, max_forward_jump_s: float = 10.0):
        self.max_forward_jump_s = float(max_forward_jump_s)
        self.last: Optional[float] = None  # stamp of the last taken item
        self._held: Optional[T] = None
        self._held_stamp = 0.0

    def clear(self) -> None:
        self.last = None
        self._held = None

    def _is_jump(self, stamp: float) -> bool:
        return self.last is not None and (stamp < self.last or stamp > self.last + self.max_forward_jump_s)

    def decide(self, stamp: float, item: T) -> Decision[T]:
        if self._held is not None:
            return self._resolve(stamp, item)
        if self.last is not None and stamp == self.last:
            return Decision(Verdict.DUPLICATE, [], dropped=["duplicate_stamp"])
        if self._is_jump(stamp):
            self._held, self._held_stamp = item, stamp
            return Decision(Verdict.HELD, [])
        self.last = stamp
        return Decision(Verdict.TAKE, [item])

    def _resolve(self, stamp: float, item: T) -> Decision[T]:
        held, h, last = self._held, self._held_stamp, self.last
        assert last is not None
        backwards = h < last
        if stamp == h:  # the held frame again
            return Decision(Verdict.DUPLICATE, [], dropped=["duplicate_stamp"])
        follows_held = h < stamp < last if backwards else stamp > h
        self._held = None
        if follows_held:
            self.last = stamp
            return Decision(Verdict.TAKE, [held, item], restart=backwards)
        outlier = "stamp_backwards_outlier" if backwards else "stamp_forward_outlier"
        # the old timeline goes on (or a second jump: that one is judged afresh)
        if stamp == last:
            return Decision(Verdict.DUPLICATE, [], dropped=[outlier, "duplicate_stamp"])
        if self._is_jump(stamp):
            self._held, self._held_stamp = item, stamp
            return Decision(Verdict.HELD, [], dropped=[outlier])
        self.last = stamp
        return Decision(Verdict.TAKE, [item], dropped=[outlier])
