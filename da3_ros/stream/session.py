"""One streaming session: what every front end drives (the node, process-bag,
run-offline, the demo, the bench's end-to-end run). No ROS, no torch.

A front end only converts: its input (image messages, bag records, files) into
`Frame`s with their stamps, camera and intrinsics, and the `StreamResult`s the
session answers into its output (messages, bag records, files). Everything
between is decided here, once:

* rig synchronisation (`StreamConfig.cameras`, `rig_sync_tolerance`,
  `rig_max_wait`): each camera's frames are grouped into rig frames;
* validation: a frame the stream cannot take, or a model answer that breaks its
  contract, is counted and reported through `warn`, and the session goes on;
* reset: `reset(reason)` is the one call for a user's request (`~/reset`) and
  a clock jump; a restart of time (the end of a looping bag) is found by the
  stream's timeline itself. `n_resets` counts both, and `on_reset` is told of
  both: what a front end keeps of the old timeline goes with the world.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, List, Optional, Sequence

from .config import StreamConfig
from .interface import Frame, WindowModel
from .pipeline import FrameError, ModelOutputError, Streamer
from .result import StreamResult
from .rig_sync import RigFrame, RigSynchronizer


def _ignore(text: str) -> None:
    pass


class Session:
    """Frames (of one camera, or of a rig's cameras: `Frame.camera`) in, results out.

    newest_only: a live front end that must keep up answers only the newest rig
        frame the synchronizer releases at once (the older ones are counted in
        `counts["rig_frames_dropped"]`); offline every rig frame is answered.
    warn(text): told of every frame or window dropped, phrased for a log line.
    on_reset(): called after every reset, requested or found (what the front end
        keeps beside the session, e.g. the node's external odometry, is cleared there).

    Thread use as `Streamer` (push / flush / reset / update from one thread).
    """

    def __init__(self, model: WindowModel, config: Optional[StreamConfig] = None, newest_only: bool = False,
                 warn: Callable[[str], None] = _ignore, on_reset: Callable[[], None] = lambda: None):
        self.streamer = Streamer(model, config or StreamConfig())
        cfg = self.streamer.config
        self.sync: Optional[RigSynchronizer] = None
        if cfg.cameras:
            self.sync = RigSynchronizer(cfg.cameras, cfg.rig_sync_tolerance, cfg.rig_max_wait,
                                        max_forward_jump_s=cfg.max_stamp_jump)
        self.newest_only = newest_only
        self.warn = warn
        self.on_reset = on_reset
        #: frames and windows the session dropped, by reason (the stream's own drops: streamer.counts)
        self.counts: Counter = Counter()

    @property
    def config(self) -> StreamConfig:
        return self.streamer.config

    @property
    def n_resets(self) -> int:
        return self.streamer.n_resets

    # ------------------------------------------------------------ input

    def push(self, frame: Frame) -> List[StreamResult]:
        """One camera's frame -> the results it (or the rig frame it completes) answered."""
        return self.push_frames([frame])

    def push_frames(self, frames: Sequence[Frame]) -> List[StreamResult]:
        """Frames in arrival order (a rig's cameras: grouped by stamp first)."""
        if self.sync is None:
            results: List[StreamResult] = []
            for frame in frames:
                results += self._answer([frame])
            return results
        released: List[RigFrame] = []
        for frame in frames:
            if frame.camera not in self.sync.cameras:
                self._drop("unknown_camera", f"frame of camera {frame.camera!r} dropped: the rig's cameras are "
                                             f"{', '.join(self.sync.cameras)}")
                continue
            released += self.sync.push(frame.camera, float(frame.stamp), frame, frame.received)
        return self._answer_rig_frames(released)

    def flush(self) -> List[StreamResult]:
        """End of input: rig frames still waiting for a camera, then the frames
        waiting for a full stride."""
        results = self._answer_rig_frames(self.sync.flush()) if self.sync is not None else []
        try:
            return results + self.streamer.flush()
        except ModelOutputError as exc:
            self._drop("windows_failed", f"last window dropped: {exc}")
            return results

    def _answer_rig_frames(self, released: List[RigFrame]) -> List[StreamResult]:
        if self.newest_only and len(released) > 1:
            self.counts["rig_frames_dropped"] += len(released) - 1
            released = released[-1:]
        results: List[StreamResult] = []
        for rig_frame in released:
            results += self._answer([view.data for view in rig_frame.views.values()])
        return results

    def _answer(self, frames: List[Frame]) -> List[StreamResult]:
        epoch = self.streamer.epoch
        try:
            return self.streamer.push_rig(frames)
        except FrameError as exc:  # the stream rejected the frame (shape, dtype, ...): nothing changed
            self._drop("frames_rejected", f"frame at t={float(frames[0].stamp):.3f} rejected: {exc}")
        except ModelOutputError as exc:  # the window's new frames are dropped, the stream goes on
            self._drop("windows_failed", f"window with the frame at t={float(frames[0].stamp):.3f} dropped: {exc}")
        finally:
            if self.streamer.epoch != epoch:  # the timeline restarted (time went back): the stream reset itself
                self.on_reset()
        return []

    def _drop(self, reason: str, text: str) -> None:
        self.counts[reason] += 1
        self.warn(text)

    # ------------------------------------------------------------ state

    def reset(self, reason: str = "reset_called") -> None:
        """The one reset: window, world, map, trajectory and the rig frames
        waiting; the next result says `reason`."""
        self.streamer.reset(reason)
        if self.sync is not None:
            self.sync.reset()
        self.on_reset()

    def update(self, **changes) -> None:
        """Thresholds changed while streaming (Streamer.RUNTIME_FIELDS)."""
        self.streamer.update_config(**changes)

    def status(self) -> Dict[str, object]:
        """Counters and the world's state for diagnostics and summaries."""
        s = self.streamer
        out: Dict[str, object] = {"counts": {**s.counts, **self.counts}, "metric": s.metric, "resets": s.n_resets}
        if self.sync is not None:
            rig = s.rig.status() if s.rig is not None else {}
            out["rig"] = {**{k: str(v) for k, v in self.sync.stats().items()}, **rig,
                          "frames_dropped": str(self.counts["rig_frames_dropped"])}
        return out

    def rig_summary(self) -> Dict[str, object]:
        """The rig's synchronizer counts, scale and estimated extrinsics (a result file)."""
        if self.sync is None:
            return {}
        rig = self.streamer.rig
        return {**self.sync.stats(), **(rig.to_dict() if rig is not None else {"metres_per_first_window_unit": None})}
