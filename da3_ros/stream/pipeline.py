"""The streaming core: frames in, per-frame depth / pose / intrinsics out, in
one world frame and one scale, with bounded memory. No ROS, no torch.

Every per-frame decision lives here, once, for the node, process-bag and
run-offline alike: which stamps continue the timeline (duplicates, outliers,
restarts: `timeline.Timeline`), when the world resets, which frames become
keyframes, how a window is placed in the world, what goes into the map."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..geometry.camera import depth_to_points, resize_bilinear, scale_intrinsics
from ..geometry.transforms import Sim3, is_rigid
from .config import StreamConfig
from .interface import Frame, WindowModel, WindowPrediction
from .intrinsics import IntrinsicsEstimator
from .result import AlignmentStatus, StreamResult
from .rig import EstimatedExtrinsics, RigCalibration, RigState
from .timeline import Timeline
from .window import WindowEntry, is_new_keyframe, shared_to_decode
from .world import WorldAnchor, align_window
from .world_map import Trajectory, TrajectoryBuffer, VoxelMap


class FrameError(ValueError):
    """A frame the stream cannot take (wrong shape, dtype, non-finite values).
    Raised before any state changes."""


class ModelOutputError(RuntimeError):
    """The model's answer breaks the WindowPrediction contract. The window's
    new frames are dropped; the rest of the state is unchanged."""


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

    Thread use: push/flush/reset from one thread; `insert_map` and `map_points`
    may be called from another (the map has its own lock).
    """

    #: StreamConfig fields that may change while streaming (thresholds)
    RUNTIME_FIELDS = ("min_confidence", "depth_range", "keyframe_translation", "keyframe_translation_depth_ratio",
                      "keyframe_rotation_deg", "keyframe_max_seconds", "map_from", "map_deferred")

    def __init__(self, model: WindowModel, config: Optional[StreamConfig] = None):
        if not isinstance(model, WindowModel):
            raise TypeError(f"{type(model).__name__} does not implement WindowModel")
        self.model = model
        self.config = config or StreamConfig()
        cfg = self.config
        self._map = VoxelMap(cfg.map_voxel_size, cfg.map_max_points)
        self._map_lock = threading.Lock()
        self._traj = TrajectoryBuffer(cfg.trajectory_cap)
        self._timeline: Timeline[Frame] = Timeline(cfg.max_forward_jump_s)
        self.anchor = WorldAnchor()
        #: the rig as the stream sees it (metric scale, extrinsics), with two cameras or more
        self._rig = RigCalibration(cfg.rig_cameras) if len(cfg.rig_cameras) >= 2 else None
        #: metres per unit of the first window, once a calibrated rig fixed it
        self.rig_metres_per_unit: Optional[float] = None
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
            self._validate(frame)
        cameras = [f.camera for f in frames]
        if len(set(cameras)) != len(cameras):
            raise FrameError(f"one image per camera in a rig frame, got cameras {cameras}")
        if len(frames) * self.config.stride >= self.config.window_size:
            raise FrameError(f"window_size ({self.config.window_size} views) must exceed stride x cameras "
                             f"({self.config.stride} x {len(frames)}) so windows share a keyframe")
        decision = self._timeline.decide(float(frames[0].stamp), frames)
        self.counts.update(decision.dropped)
        if decision.restart:  # time really went backwards (a looping bag, a restarted driver)
            self.reset("time_backwards")
            self._timeline.last = float(decision.take[-1][0].stamp)
        results: List[StreamResult] = []
        for taken in decision.take:
            results += self._take(taken)
        return results

    def flush(self) -> List[StreamResult]:
        """Answer the frames still waiting for a full stride (end of input)."""
        return self._run_window() if self._pending else []

    def insert_map(self, result: StreamResult) -> None:
        """Add a result's valid points to the world map (push does it itself
        unless `map_deferred`). A result from before a reset is ignored."""
        if result.epoch != self.epoch:
            return
        cfg = self.config
        mask = result.valid_mask()
        xyz, flat = depth_to_points(result.depth, result.intrinsics, result.c2w, mask, cfg.map_pixel_stride)
        with self._map_lock:
            self._map.insert(xyz, result.image.reshape(-1, 3)[flat], result.confidence.ravel()[flat], self.n_windows)

    def map_points(self, frame: str = "stream") -> Tuple[np.ndarray, np.ndarray]:
        """World map: (xyz (M,3), rgb (M,3) uint8) in the "stream" frame (float32)
        or the published "world" (float64)."""
        with self._map_lock:
            xyz, rgb = self._map.points()
        if frame == "world":
            return self.anchor.points_to_world(xyz), rgb
        return xyz, rgb

    def trajectory(self) -> Trajectory:
        """Answered poses in the stream frame (at most trajectory_cap, oldest dropped first)."""
        return self._traj.get()

    @property
    def metric(self) -> bool:
        """True once the world is in metres (metric model or external poses)."""
        return bool(self._world_metric)

    @property
    def world_mode(self) -> Optional[str]:
        """None before the first window, then "model" or "external"."""
        return self._world_mode

    @property
    def window_fill(self) -> int:
        """Frames holding a model handle now (keyframes + waiting frames)."""
        return len(self._keyframes) + len(self._pending)

    @property
    def map_size(self) -> int:
        return len(self._map)

    # -- internals ----------------------------------------------------------
    def _reset_state(self) -> None:
        for e in getattr(self, "_keyframes", []) + getattr(self, "_pending", []):
            e.release()
        self._keyframes: List[WindowEntry] = []
        self._pending: List[WindowEntry] = []
        self._world_mode: Optional[str] = None
        self._world_metric = False
        self._prev_scale = 1.0
        self._resolution: Dict[str, Tuple[int, int]] = {}  # camera -> (width, height)
        self._n_groups = 0  # rig frames taken since the reset
        self._views_per_group = 1  # the most cameras seen in one rig frame
        with self._map_lock:
            self._map.clear()
        self._traj.clear()
        self._intr: Dict[str, IntrinsicsEstimator] = {}  # camera -> estimator
        self.anchor.reset()
        self.n_windows = 0
        if getattr(self, "_rig", None) is not None:
            self._rig.reset()
        self.rig_metres_per_unit = None
        self._rescaled = 1.0  # factor applied to the world before the next result

    def _take(self, frames: List[Frame]) -> List[StreamResult]:
        results: List[StreamResult] = []
        for frame in frames:
            size = (frame.width, frame.height)
            old = self._resolution.get(frame.camera)
            if old is not None and size != old:
                # the camera was reconfigured: answer what waits at the old size, then
                # bring its keyframes to the new one; the world is kept
                results += self.flush()
                self._resize_keyframes(frame.camera, *size)
                self.counts["resolution_changes"] += 1
            self._resolution[frame.camera] = size
        group = self._n_groups
        self._n_groups += 1
        self._views_per_group = max(self._views_per_group, len(frames))
        self._pending += [WindowEntry(f, self.model.encode(f), group=group) for f in frames]
        if len({e.group for e in self._pending}) >= self.config.stride:
            results += self._run_window()
        return results

    def _intrinsics_estimator(self, camera: str) -> IntrinsicsEstimator:
        if camera not in self._intr:
            self._intr[camera] = IntrinsicsEstimator(self.config.intrinsics_history)
        return self._intr[camera]

    def _resize_keyframes(self, camera: str, width: int, height: int) -> None:
        """Re-encode the camera's kept keyframes at width x height so the next
        window can share them with the new frames (a window's views have one size)."""
        for e in self._keyframes:
            if e.frame.camera != camera:
                continue
            old = e.frame
            sx, sy = width / old.width, height / old.height
            K = None if old.intrinsics is None else scale_intrinsics(old.intrinsics, sx, sy)
            frame = replace(old, image=resize_bilinear(old.image, width, height), intrinsics=K)
            e.resize(frame, self.model.encode(frame))

    @staticmethod
    def _validate(frame: Any) -> None:
        if not isinstance(frame, Frame):
            raise FrameError(f"expected a Frame, got {type(frame).__name__}")
        img = frame.image
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
            raise FrameError(f"image must be an HxWx3 array, got {getattr(img, 'shape', type(img))}")
        if img.dtype != np.uint8:
            raise FrameError(f"image must be uint8 RGB, got {img.dtype}")
        if img.shape[0] < 2 or img.shape[1] < 2:
            raise FrameError(f"image too small: {img.shape}")
        try:
            stamp = float(frame.stamp)
        except (TypeError, ValueError):
            raise FrameError(f"stamp must be a number of seconds, got {frame.stamp!r}") from None
        if not np.isfinite(stamp):
            raise FrameError("stamp is not finite")
        if frame.intrinsics is not None:
            K = np.asarray(frame.intrinsics)
            if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise FrameError("intrinsics must be a finite 3x3 matrix with positive focal lengths")
        for name in ("c2w_external", "T_base_optical"):
            T = getattr(frame, name)
            if T is not None and not is_rigid(np.asarray(T, dtype=np.float64), tol=1e-3):
                raise FrameError(f"{name} must be a finite 4x4 rigid transform")

    def _conditioning(self, window: List[WindowEntry]):
        """(intrinsics (S,3,3), c2w (S,4,4)) when the window can be pose-conditioned."""
        if not self.config.use_external_poses or self._world_mode == "model":
            return None
        if any(e.frame.c2w_external is None for e in window):
            return None
        Ks = []
        for e in window:
            K = e.frame.intrinsics if e.frame.intrinsics is not None else self._intrinsics_estimator(e.frame.camera).estimate()
            if K is None:
                return None  # the model needs both poses and intrinsics
            Ks.append(np.asarray(K, np.float64))
        return np.stack(Ks), np.stack([np.asarray(e.frame.c2w_external, np.float64) for e in window])

    def _bootstrap_intrinsics(self, window, frames, handles) -> None:
        """External poses from the very first window on but no intrinsics yet
        (no CameraInfo): conditioning needs both, so ask the model once,
        unconditioned and without depth, for its intrinsics. Without this the
        world would silently become the model's frame instead of the
        odometry's."""
        if self._world_mode is not None or not self.config.use_external_poses:
            return
        if any(e.frame.c2w_external is None for e in window):
            return
        if all(e.frame.intrinsics is not None or self._intrinsics_estimator(e.frame.camera).estimate() is not None
               for e in window):
            return
        probe = self.model.predict(frames, handles, [])
        self._check(probe, frames, [])
        for c, e in enumerate(window):
            if e.frame.intrinsics is None:
                self._intrinsics_estimator(e.frame.camera).add(np.asarray(probe.intrinsics, np.float64)[c],
                                                               e.frame.width, e.frame.height)

    def _check(self, pred: Any, frames: List[Frame], decode: List[int]) -> None:
        S = len(frames)
        if not isinstance(pred, WindowPrediction):
            raise ModelOutputError(f"model returned {type(pred).__name__}, not WindowPrediction")
        c2w = np.asarray(pred.c2w)
        K = np.asarray(pred.intrinsics)
        if c2w.shape != (S, 4, 4) or not np.all(np.isfinite(c2w)):
            raise ModelOutputError(f"c2w must be finite ({S},4,4), got {c2w.shape}")
        if K.shape != (S, 3, 3) or not np.all(np.isfinite(K)) or np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
            raise ModelOutputError(f"intrinsics must be finite ({S},3,3) with positive focals")
        if pred.pose_confidence is not None:
            pc = np.asarray(pred.pose_confidence)
            if pc.shape != (S,) or not np.all(np.isfinite(pc)) or np.any(pc < 0):
                raise ModelOutputError(f"pose_confidence must be finite, >= 0, shape ({S},)")
        for p in decode:
            hw = (frames[p].height, frames[p].width)
            if p not in pred.depth or p not in pred.confidence:
                raise ModelOutputError(f"no depth/confidence for decoded window index {p}")
            if pred.depth[p].shape != hw or pred.confidence[p].shape != hw:
                raise ModelOutputError(f"depth/confidence for index {p} must be {hw} (native resolution)")

    def _run_window(self) -> List[StreamResult]:
        cfg = self.config
        new, self._pending = self._pending, []
        shared = self._shared_keyframes(cfg.window_size - len(new))
        window = shared + new
        try:
            pred, cond = self._predict(window, first_new=len(shared))
        except Exception:
            for e in new:
                e.release()
            raise
        S = len(window)
        sim, status, inliers = self._place(pred, cond, shared, S)
        if self._rig is not None:
            factor = self._observe_rig(window, pred, sim)
            sim = Sim3(factor, np.eye(3), np.zeros(3)).compose(sim)  # the window in the rescaled world
        results, decided = [], {}
        for i in range(len(shared), S):
            e = window[i]
            c2w = sim.apply_c2w(np.asarray(pred.c2w[i], np.float64))
            primary = e.group not in decided  # the rig frame's first view
            if primary:  # keyframes are whole rig frames: its first view decides
                decided[e.group] = is_new_keyframe(c2w, e.frame.stamp, self._last_keyframe(e.frame.camera), cfg)
            e.keyframe = decided[e.group]
            results.append(self._answer(e, pred, i, c2w, sim, status, inliers, S, primary))
        self._evict()
        for e in new:
            if not e.keyframe:
                e.release()
        return results

    def _observe_rig(self, window: List[WindowEntry], pred: WindowPrediction, sim: Sim3) -> float:
        """Every view of the window (shared ones too: each window's errors differ,
        which is what makes a short baseline usable) feeds the rig's scale and
        extrinsics estimates; a confident metric scale is applied to the world.
        Returns the factor the world's unit changed by (1: unchanged)."""
        poses = [sim.apply_c2w(np.asarray(pred.c2w[j], np.float64)) for j in range(len(window))]
        self._rig.observe([(e.group, e.frame, c2w) for e, c2w in zip(window, poses)])
        cfg = self.config
        estimate = self._rig.scale(cfg.rig_scale_min_frames)  # over the baselines the model agrees with
        if estimate is None or self.metric and self.rig_metres_per_unit is None:
            return 1.0  # no calibrated baseline, or metres already (metric model, external poses)
        if estimate.std_error > cfg.rig_scale_max_error or self._n_groups < cfg.rig_scale_min_frames:
            return 1.0
        agrees = abs(estimate.scale - 1.0) <= max(2.0 * estimate.std_error, cfg.rig_scale_max_error / 5)
        if agrees and self.rig_metres_per_unit is not None:
            return 1.0  # metric, and the rig still agrees
        factor = 1.0 if agrees else estimate.scale
        if factor != 1.0:
            self._rescale_world(factor)
        self.rig_metres_per_unit = (self.rig_metres_per_unit or 1.0) * factor
        self._world_metric = True
        self.counts["rig_scale_updates"] += 1
        return factor

    def _rescale_world(self, factor: float) -> None:
        """The stream frame's unit times `factor`: keyframes (poses, alignment
        samples), trajectory, map, anchor and the rig's observations."""
        for e in self._keyframes:
            e.rescale(factor)
        self._traj.rescale(factor)
        with self._map_lock:
            self._map.rescale(factor)
        self.anchor.rescale(factor)
        self._prev_scale *= factor
        self._rig.rescale(factor)
        self._rescaled *= factor

    def rig_extrinsics(self) -> Dict[str, EstimatedExtrinsics]:
        """Each rig camera's pose in the first camera's optical frame, as estimated
        from the model (stream units: metres once metric); empty without a rig."""
        return self._rig.extrinsics() if self._rig is not None else {}

    def rig_state(self) -> Optional[RigState]:
        """The rig's scale state per camera (stream.rig.RigState); None without a rig.
        A world already metric without the rig (metric model, external poses) is
        one metre per unit, and the rig is checked against that."""
        if self._rig is None:
            return None
        cfg = self.config
        metres = self.rig_metres_per_unit
        if metres is None and self._world_metric:
            metres = 1.0
        return self._rig.state(self._n_groups, metres, cfg.rig_scale_min_frames, cfg.rig_scale_max_error)

    def rig_status(self) -> Dict[str, str]:
        """The rig's state for diagnostics: `state`, per camera `<camera>_state`
        (one of stream.rig.RIG_STATES) and `<camera>` (why, with numbers), the
        current estimate and the scale updates applied."""
        state = self.rig_state()
        if state is None:
            return {}
        out = {"state": state.state, "frames_seen": str(state.rig_frames),
               "metres_per_unit": "n/a" if state.metres_per_unit is None else f"{state.metres_per_unit:.5f}",
               "scale_updates": str(self.counts["rig_scale_updates"])}
        for c, cs in state.cameras.items():
            out[f"{c}_state"], out[c] = cs.state, cs.detail
        e = state.estimate
        if e is not None:
            out.update(scale_residual=f"{e.scale:.5f}", scale_std_error=f"{e.std_error:.4f}", scale_spread=f"{e.spread:.4f}")
        return out

    def rig_calibration(self) -> Dict[str, Any]:
        """The rig's state, scale and estimated extrinsics as JSON-able data (a result file)."""
        if self._rig is None:
            return {"metres_per_first_window_unit": self.rig_metres_per_unit}
        state = self.rig_state()
        out = self._rig.to_dict(state.estimate)
        out["metres_per_first_window_unit"] = self.rig_metres_per_unit
        out["state"] = state.to_dict()
        return out

    def _shared_keyframes(self, room: int) -> List[WindowEntry]:
        """The newest keyframes that fit in `room` views beside the new ones:
        whole rig frames, newest first; at least one view when any exists."""
        if room <= 0 or not self._keyframes:
            return []
        groups: Dict[int, List[WindowEntry]] = {}
        for e in self._keyframes:
            groups.setdefault(e.group, []).append(e)
        shared: List[WindowEntry] = []
        for group in sorted(groups, reverse=True):
            if len(shared) + len(groups[group]) > room:
                break
            shared = groups[group] + shared
        return shared or self._keyframes[-room:]

    def _last_keyframe(self, camera: str) -> Optional[WindowEntry]:
        return next((e for e in reversed(self._keyframes) if e.frame.camera == camera), None)

    def _evict(self) -> None:
        """Keep the newest keyframes that fit beside the next `stride` rig frames."""
        room = self.config.window_size - self.config.stride * self._views_per_group
        while len(self._keyframes) > max(room, 1):
            oldest = self._keyframes[0].group
            while self._keyframes and self._keyframes[0].group == oldest and len(self._keyframes) > max(room, 1):
                self._keyframes.pop(0).release()

    def _predict(self, window: List[WindowEntry], first_new: int) -> Tuple[WindowPrediction, Any]:
        """The model's answer for the window (views in chronological order: the
        model picks its reference view), checked against the contract."""
        S = len(window)
        decode = shared_to_decode(window[:first_new], self.config.align_shared_decode) + list(range(first_new, S))
        frames = [e.frame for e in window]
        handles = [e.handle for e in window]
        self._bootstrap_intrinsics(window, frames, handles)
        cond = self._conditioning(window)
        if cond is not None:
            pred = self.model.predict(frames, handles, decode, intrinsics=cond[0], c2w=cond[1])
        else:
            pred = self.model.predict(frames, handles, decode)
        self._check(pred, frames, decode)
        pred.depth = {i: pred.depth[i] for i in decode}
        pred.confidence = {i: pred.confidence[i] for i in decode}
        return pred, cond

    def _place(self, pred: WindowPrediction, cond, shared: List[WindowEntry], S: int) -> Tuple[Sim3, str, float]:
        """The window -> stream Sim(3), how it was found, and its inlier fraction."""
        cfg = self.config
        inliers = float("nan")
        if self._world_mode is None:  # the first window defines the stream frame
            self._world_mode = "external" if cond is not None else "model"
            self._world_metric = cond is not None or bool(pred.metric)
            sim, status = Sim3.identity(), (AlignmentStatus.EXTERNAL if cond is not None else AlignmentStatus.FIRST_WINDOW)
        elif cond is not None:
            sim, status = Sim3.identity(), AlignmentStatus.EXTERNAL
        else:
            pose_conf = np.ones(S) if pred.pose_confidence is None else np.asarray(pred.pose_confidence, np.float64)
            first_new = len(shared)
            al = align_window(
                list(enumerate(shared)), list(range(first_new, S)), np.asarray(pred.c2w, np.float64),
                np.asarray(pred.intrinsics, np.float64), pred.depth, pred.confidence, pose_conf, cfg,
                not (self._world_metric and pred.metric), self._prev_scale,
            )
            sim, status, inliers = al.sim3, al.status, al.inliers
        self._prev_scale = sim.scale
        self.n_windows += 1
        return sim, status, inliers

    def _answer(self, e: WindowEntry, pred: WindowPrediction, i: int, c2w: np.ndarray, sim: Sim3, status: str,
                inliers: float, S: int, primary: bool) -> StreamResult:
        """The result for window view i (a new frame; `c2w` its stream pose), and
        the bookkeeping it feeds: intrinsics estimate, keyframes, trajectory (one
        pose per rig frame: its `primary` view), anchor, map."""
        cfg, f = self.config, e.frame
        K_win = np.asarray(pred.intrinsics[i], np.float64)
        depth = (pred.depth[i] * np.float32(sim.scale)).astype(np.float32, copy=False)
        confidence = np.asarray(pred.confidence[i], np.float32)
        if f.intrinsics is not None:
            K_pub, source = np.asarray(f.intrinsics, np.float64).copy(), "camera_info"
        else:
            estimator = self._intrinsics_estimator(f.camera)
            estimator.add(K_win, f.width, f.height)
            K_pub, source = estimator.estimate(), "estimated"
        e.c2w_stream = c2w
        if e.keyframe:
            e.store_sample(depth, confidence, K_win, c2w, cfg)
            self._keyframes.append(e)
        if self.anchor.T_world_stream is None:
            self.anchor.anchor(c2w, f.T_base_optical, external=self._world_mode == "external")
        r = StreamResult(
            stamp=float(f.stamp), index=int(f.index), c2w=c2w, T_world_optical=self.anchor.to_world(c2w),
            intrinsics=K_pub, intrinsics_source=source, depth=depth, confidence=confidence, image=f.image,
            metric=self._world_metric, keyframe=e.keyframe, alignment=status, alignment_scale=float(sim.scale),
            alignment_inliers=inliers, window_fill=S, window_size=cfg.window_size, reset=self._reset_reason,
            min_confidence=cfg.min_confidence, depth_range=tuple(cfg.depth_range), epoch=self.epoch, meta=f.meta,
            in_map=cfg.map_from == "all" or (cfg.map_from == "keyframes" and e.keyframe), world_rescaled=self._rescaled,
        )
        self._reset_reason = None
        self._rescaled = 1.0
        if primary:
            self._traj.append(r.stamp, c2w, r.index, r.keyframe)
        if r.in_map and not cfg.map_deferred:
            self.insert_map(r)
        return r
