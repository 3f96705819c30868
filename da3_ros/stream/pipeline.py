"""The streaming core: frames in, per-frame depth / pose / intrinsics out, in
one world frame and one scale, with bounded memory. No ROS, no torch.

Every per-frame decision lives here or in the objects it holds, once, for every
front end (they drive it through `stream.session.Session`): which stamps
continue the timeline (`timeline.Timeline`), when the world resets, which
frames become keyframes (`window`), how a window is placed in the world and
what goes into the map and trajectory (`world.World`), the rig's scale
(`rig_metric.RigMetric`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..geometry.transforms import Sim3
from .checks import FrameError, ModelOutputError, check_frame, check_prediction
from .config import StreamConfig
from .interface import Frame, WindowModel, WindowPrediction
from .intrinsics import CameraIntrinsics, bootstrap_intrinsics, conditioning
from .result import StreamResult
from .rig_metric import RigMetric
from .settings import SETTINGS, STREAM, check_window
from .timeline import Timeline
from .window import Keyframes, WindowEntry, is_new_keyframe, shared_to_decode
from .world import World
from .trajectory import Trajectory

__all__ = ["FrameError", "ModelOutputError", "Streamer"]


class Streamer:
    """Sliding-window streaming over a `WindowModel`.

    push(frame) -> results for the frames answered by this call (every
    `stride`-th taken frame answers `stride` frames; call flush() at the end of
    a finite sequence). push_rig(frames) takes one rig frame: the images of
    several cameras (Frame.camera) taken at one instant; the window then holds
    views of every camera (window_size counts views), so each inference sees
    them all, and keyframes are whole rig frames. Poses come in two frames (see `world`): `c2w` in the
    stream frame (the first window's reference camera, scale of the first
    window, metres when the model is metric; or the external odometry frame in
    pose-conditioned mode) and `T_world_optical` in the published world.

    The world (`self.world`: placement, anchor, map, the one trajectory, its
    unit) and the rig's scale (`self.rig`, with two cameras or more) are their
    own objects; the streamer keeps the window (keyframes, waiting frames),
    intrinsics and the timeline.

    Thread use: push/flush/reset from one thread; `insert_map`, `map_points`
    and `trajectory` may be called from another (the world has its own lock).
    """

    #: StreamConfig fields that may change while streaming (thresholds)
    RUNTIME_FIELDS = tuple(name for name, s in SETTINGS.items() if s.runtime and s.scope == STREAM) + (
        "map_from", "map_deferred")

    def __init__(self, model: WindowModel, config: Optional[StreamConfig] = None):
        if not isinstance(model, WindowModel):
            raise TypeError(f"{type(model).__name__} does not implement WindowModel")
        self.model = model
        self.config = config or StreamConfig()
        cfg = self.config
        self.world = World(cfg)
        self._timeline: Timeline[Frame] = Timeline(cfg.max_stamp_jump)
        #: the rig's scale and extrinsics as the stream sees them, with two cameras or more
        self.rig: Optional[RigMetric] = RigMetric(cfg) if len(cfg.cameras) >= 2 else None
        self._keyframes = Keyframes()
        self._pending: List[WindowEntry] = []
        self._intrinsics = CameraIntrinsics(cfg.intrinsics_history)
        #: frames dropped by the timeline and resets, by reason (for diagnostics)
        self.counts: Counter = Counter()
        #: increases at every reset; results carry the epoch they were answered in
        self.epoch = 0
        self._reset_reason: Optional[str] = None
        self._reset_state()

    # -- public -------------------------------------------------------------
    def reset(self, reason: str = "reset_called") -> None:
        """Forget everything (window, world, map, trajectory, intrinsics); the
        next result says `reason` in its `reset` field."""
        self._reset_state()
        self._timeline.clear()
        self._reset_reason = reason
        self.counts["resets"] += 1
        self.counts[f"reset_{reason}"] += 1
        self.epoch += 1

    @property
    def n_resets(self) -> int:
        return self.counts["resets"]

    def update_config(self, **changes) -> None:
        """Change thresholds while streaming (RUNTIME_FIELDS); the next window,
        result and map insertion use them. Raises ValueError for another field or
        an invalid value, changing nothing."""
        fixed = set(changes) - set(self.RUNTIME_FIELDS)
        if fixed:
            raise ValueError(f"cannot change {sorted(fixed)} while streaming")
        self.config = replace(self.config, **changes)  # __post_init__ validates

    def push(self, frame: Frame) -> List[StreamResult]:
        """Take one frame. Raises FrameError (before any state changes) for a frame
        the stream cannot take."""
        return self.push_rig([frame])

    def push_rig(self, frames: Sequence[Frame]) -> List[StreamResult]:
        """Take one rig frame: one image per camera, all of one instant (a
        camera may be missing). The first frame's stamp is the rig frame's.
        Raises FrameError (before any state changes) for frames the stream
        cannot take."""
        frames = list(frames)
        if not frames:
            raise FrameError("a rig frame needs at least one image")
        for frame in frames:
            check_frame(frame)
        cameras = [f.camera for f in frames]
        if len(set(cameras)) != len(cameras):
            raise FrameError(f"one image per camera in a rig frame, got cameras {cameras}")
        try:
            check_window(self.config.window_size, self.config.stride, len(frames))
        except ValueError as exc:
            raise FrameError(str(exc)) from None
        decision = self._timeline.decide(float(frames[0].stamp), frames, frames[0].received)
        self.counts.update(decision.dropped)
        if decision.restart:  # time really went backwards (a looping bag, a restarted driver)
            self.reset("time_backwards")
            self._timeline.restart_at(float(decision.take[-1][0].stamp), decision.take[-1][0].received)
        results: List[StreamResult] = []
        for taken in decision.take:
            results += self._take(taken)
        return results

    def flush(self) -> List[StreamResult]:
        """Answer the frames still waiting for a full stride (end of input)."""
        return self._run_window() if self._pending else []

    def insert_map(self, results: Sequence[StreamResult]) -> None:
        """Add results' valid points to the world map in one insert (push does it
        itself unless `map_deferred`). Results from before a reset are ignored."""
        current = [r for r in results if r.epoch == self.epoch]
        if current:
            self.world.insert_map(current, self.config.map_pixel_stride)

    def map_points(self, frame: str = "stream") -> Tuple[np.ndarray, np.ndarray]:
        """World map: (xyz (M,3), rgb (M,3) uint8) in the "stream" frame (float32)
        or the published "world" (float64)."""
        return self.world.map_points(frame)

    def trajectory(self, frame: str = "stream") -> Trajectory:
        """Answered poses (one per rig frame) in the "stream" frame or the
        published "world" (at most path_max_length, oldest dropped first)."""
        return self.world.trajectory(frame)

    @property
    def anchor(self):
        return self.world.anchor

    @property
    def n_windows(self) -> int:
        return self.world.n_windows

    @property
    def metric(self) -> bool:
        """True once the world is in metres (metric model, external poses, a calibrated rig)."""
        return bool(self.world.metric)

    @property
    def world_mode(self) -> Optional[str]:
        """None before the first window, then "model" or "external"."""
        return self.world.mode

    @property
    def window_fill(self) -> int:
        """Frames holding a model handle now (keyframes + waiting frames)."""
        return len(self._keyframes) + len(self._pending)

    @property
    def map_size(self) -> int:
        return self.world.map_size

    # -- internals ----------------------------------------------------------
    def _reset_state(self) -> None:
        self._keyframes.clear()
        for e in self._pending:
            e.release()
        self._pending = []
        self._resolution: Dict[str, Tuple[int, int]] = {}  # camera -> (width, height)
        self._n_groups = 0  # rig frames taken since the reset
        self._views_per_group = 1  # the most cameras seen in one rig frame
        self._intrinsics.clear()
        self.world.reset()
        if self.rig is not None:
            self.rig.reset()

    def _take(self, frames: List[Frame]) -> List[StreamResult]:
        results: List[StreamResult] = []
        for frame in frames:
            size = (frame.width, frame.height)
            old = self._resolution.get(frame.camera)
            if old is not None and size != old:
                # the camera was reconfigured: answer what waits at the old size, then
                # bring its keyframes to the new one; the world is kept
                results += self.flush()
                self._keyframes.resize(frame.camera, *size, self.model.encode)
                self.counts["resolution_changes"] += 1
            self._resolution[frame.camera] = size
        group = self._n_groups
        self._n_groups += 1
        self._views_per_group = max(self._views_per_group, len(frames))
        self._pending += [WindowEntry(f, self.model.encode(f), group=group) for f in frames]
        if len({e.group for e in self._pending}) >= self.config.stride:
            results += self._run_window()
        return results

    def _run_window(self) -> List[StreamResult]:
        cfg = self.config
        new, self._pending = self._pending, []
        shared = self._keyframes.shared(cfg.window_size - len(new))
        window = shared + new
        try:
            pred, cond = self._predict(window, first_new=len(shared))
        except Exception:
            for e in new:
                e.release()
            raise
        S = len(window)
        sim, status, inliers = self._place(pred, cond, shared, S)
        if self.rig is not None:
            factor = self._observe_rig(window, pred, sim)
            sim = Sim3(factor, np.eye(3), np.zeros(3)).compose(sim)  # the window in the rescaled world
        results, decided = [], {}
        for i in range(len(shared), S):
            e = window[i]
            c2w = sim.apply_c2w(np.asarray(pred.c2w[i], np.float64))
            primary = e.group not in decided  # the rig frame's first view
            if primary:  # keyframes are whole rig frames: its first view decides
                decided[e.group] = is_new_keyframe(c2w, e.frame.stamp, self._keyframes.last(e.frame.camera), cfg)
            e.keyframe = decided[e.group]
            results.append(self._answer(e, pred, i, c2w, sim, status, inliers, S, primary))
        self._keyframes.evict(cfg.window_size - cfg.stride * self._views_per_group)
        for e in new:
            if not e.keyframe:
                e.release()
        return results

    def _observe_rig(self, window: List[WindowEntry], pred: WindowPrediction, sim: Sim3) -> float:
        """Every view of the window feeds the rig's scale and extrinsics; a
        confident metric scale is applied to the world (and the keyframes).
        Returns the factor the world's unit changed by (1: unchanged)."""
        poses = [sim.apply_c2w(np.asarray(pred.c2w[j], np.float64)) for j in range(len(window))]
        views = [(e.group, e.frame, c2w) for e, c2w in zip(window, poses)]
        last = window[-1].group  # the newest rig frame's views with their depth (window units), for the overlap
        newest = [(e.frame, pred.depth[j],
                   e.frame.intrinsics if e.frame.intrinsics is not None else np.asarray(pred.intrinsics[j]))
                  for j, e in enumerate(window) if e.group == last and j in pred.depth]
        factor = self.rig.observe(views, self.world.metric, self._n_groups, self.config, newest, float(sim.scale))
        if factor is None:
            return 1.0
        if factor != 1.0:  # the stream frame's unit times factor, everywhere it is kept
            self._keyframes.rescale(factor)
            self.world.rescale(factor)
            self.rig.rescale(factor)
        self.world.metric = True
        self.counts["rig_scale_updates"] += 1
        return factor

    def _predict(self, window: List[WindowEntry], first_new: int) -> Tuple[WindowPrediction, Any]:
        """The model's answer for the window (views in chronological order: the
        model picks its reference view), checked against the contract."""
        S = len(window)
        decode = shared_to_decode(window[:first_new], self.config.align_shared_decode) + list(range(first_new, S))
        frames = [e.frame for e in window]
        handles = [e.handle for e in window]
        use_external = self.config.use_external_poses
        bootstrap_intrinsics(self.model, frames, handles, self._intrinsics, self.world.mode, use_external)
        cond = conditioning(frames, self._intrinsics, self.world.mode, use_external)
        if cond is not None:
            pred = self.model.predict(frames, handles, decode, intrinsics=cond[0], c2w=cond[1])
        else:
            pred = self.model.predict(frames, handles, decode)
        check_prediction(pred, frames, decode)
        pred.depth = {i: pred.depth[i] for i in decode}
        pred.confidence = {i: pred.confidence[i] for i in decode}
        return pred, cond

    def _place(self, pred: WindowPrediction, cond, shared: List[WindowEntry], S: int) -> Tuple[Sim3, str, float]:
        """The window -> stream Sim(3), how it was found, and its inlier fraction."""
        return self.world.place(pred, cond, len(shared), self.config, list(enumerate(shared)))

    def _answer(self, e: WindowEntry, pred: WindowPrediction, i: int, c2w: np.ndarray, sim: Sim3, status: str,
                inliers: float, S: int, primary: bool) -> StreamResult:
        """The result for window view i (a new frame; `c2w` its stream pose), and
        the bookkeeping it feeds: intrinsics estimate, keyframes, the world's
        anchor, trajectory (one pose per rig frame: its `primary` view) and map."""
        cfg, f = self.config, e.frame
        K_win = np.asarray(pred.intrinsics[i], np.float64)
        depth = (pred.depth[i] * np.float32(sim.scale)).astype(np.float32, copy=False)
        confidence = np.asarray(pred.confidence[i], np.float32)
        K_pub, source = self._intrinsics.publish(f, K_win)
        e.c2w_stream = c2w
        if e.keyframe:
            e.store_sample(depth, confidence, K_win, c2w, cfg)
            self._keyframes.add(e)
        self.world.anchor_at(c2w, f.T_base_optical)
        r = StreamResult(
            stamp=float(f.stamp), index=int(f.index), c2w=c2w, T_world_optical=self.world.anchor.to_world(c2w),
            intrinsics=K_pub, intrinsics_source=source, depth=depth, confidence=confidence, image=f.image,
            metric=self.world.metric, keyframe=e.keyframe, alignment=status, alignment_scale=float(sim.scale),
            alignment_inliers=inliers, window_fill=S, window_size=cfg.window_size, reset=self._reset_reason,
            min_confidence=cfg.min_confidence, depth_range=tuple(cfg.depth_range), epoch=self.epoch, meta=f.meta,
            in_map=cfg.map_from == "all" or (cfg.map_from == "keyframes" and e.keyframe),
            world_rescaled=self.world.take_rescaled(), world_unit=self.world.unit, primary=primary,
        )
        self._reset_reason = None
        if primary:
            self.world.record(r)
        if r.in_map and not cfg.map_deferred:
            self.insert_map([r])
        return r
