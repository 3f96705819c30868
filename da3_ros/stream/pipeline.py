"""The streaming core: frames in, per-frame depth / pose / intrinsics out, in
one world frame and one scale, with bounded memory. No ROS, no torch."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from ..geometry.camera import depth_to_points
from ..geometry.transforms import Sim3, is_rigid
from .config import StreamConfig
from .interface import Frame, WindowModel, WindowPrediction
from .intrinsics import IntrinsicsEstimator
from .result import AlignmentStatus, StreamResult
from .window import WindowEntry, is_new_keyframe, shared_to_decode
from .world import align_to_world
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
    `stride`-th push answers `stride` frames; call flush() at the end of a
    finite sequence). The world is the first window's reference camera
    (identity pose, the first window's scale; metres when the model is metric)
    or, in pose-conditioned mode, the external odometry frame.
    """

    def __init__(self, model: WindowModel, config: Optional[StreamConfig] = None):
        if not isinstance(model, WindowModel):
            raise TypeError(f"{type(model).__name__} does not implement WindowModel")
        self.model = model
        self.config = config or StreamConfig()
        cfg = self.config
        self._map = VoxelMap(cfg.map_voxel_size, cfg.map_max_points)
        self._traj = TrajectoryBuffer(cfg.trajectory_cap)
        self._intr = IntrinsicsEstimator(cfg.intrinsics_history)
        self._reset_state()
        self._reset_reason: Optional[str] = None
        self.n_resets = 0

    # -- public -------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (window, world, map, trajectory, intrinsics)."""
        self._reset_state()
        self._reset_reason = "reset_called"
        self.n_resets += 1

    def push(self, frame: Frame) -> List[StreamResult]:
        self._validate(frame)
        reason = None
        if self._last_stamp is not None and frame.stamp < self._last_stamp:
            reason = "time_backwards"  # e.g. a looping bag
        elif self._resolution is not None and (frame.width, frame.height) != self._resolution:
            reason = "resolution_change"
        if reason is not None:
            self._reset_state()
            self._reset_reason = reason
            self.n_resets += 1
        handle = self.model.encode(frame)
        self._last_stamp = float(frame.stamp)
        self._resolution = (frame.width, frame.height)
        self._pending.append(WindowEntry(frame, handle))
        if len(self._pending) < self.config.stride:
            return []
        return self._run_window()

    def flush(self) -> List[StreamResult]:
        """Answer the frames still waiting for a full stride (end of input)."""
        return self._run_window() if self._pending else []

    def map_points(self) -> Tuple[np.ndarray, np.ndarray]:
        """World map: (xyz (M,3) float32 world units, rgb (M,3) uint8)."""
        return self._map.points()

    def trajectory(self) -> Trajectory:
        """Answered poses (at most trajectory_cap, oldest dropped first)."""
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
        self._last_stamp: Optional[float] = None
        self._resolution: Optional[Tuple[int, int]] = None
        self._map.clear()
        self._traj.clear()
        self._intr.reset()
        self.n_windows = 0

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
        if frame.c2w_external is not None and not is_rigid(np.asarray(frame.c2w_external, dtype=np.float64), tol=1e-3):
            raise FrameError("c2w_external must be a finite 4x4 rigid transform")

    def _conditioning(self, window: List[WindowEntry]):
        """(intrinsics (S,3,3), c2w (S,4,4)) when the window can be pose-conditioned."""
        if not self.config.use_external_poses or self._world_mode == "model":
            return None
        if any(e.frame.c2w_external is None for e in window):
            return None
        Ks = []
        for e in window:
            K = e.frame.intrinsics if e.frame.intrinsics is not None else self._intr.estimate()
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
        if self._world_mode is not None or not self.config.use_external_poses or self._intr.estimate() is not None:
            return
        if any(e.frame.c2w_external is None for e in window) or all(e.frame.intrinsics is not None for e in window):
            return
        probe = self.model.predict(frames, handles, [])
        self._check(probe, frames, [])
        for c, e in enumerate(window):
            if e.frame.intrinsics is None:
                self._intr.add(np.asarray(probe.intrinsics, np.float64)[c], e.frame.width, e.frame.height)

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
        n_shared = cfg.window_size - len(new)
        shared = self._keyframes[-n_shared:] if n_shared > 0 and self._keyframes else []
        window = shared + new
        S = len(window)
        first_new = len(shared)
        decode = shared_to_decode(shared, cfg.align_shared_decode) + list(range(first_new, S))
        frames = [e.frame for e in window]
        handles = [e.handle for e in window]
        try:
            self._bootstrap_intrinsics(window, frames, handles)
            cond = self._conditioning(window)
            if cond is not None:
                pred = self.model.predict(frames, handles, decode, intrinsics=cond[0], c2w=cond[1])
            else:
                pred = self.model.predict(frames, handles, decode)
            self._check(pred, frames, decode)
        except Exception:
            for e in new:
                e.release()
            raise
        del handles
        c2w_win = np.asarray(pred.c2w, np.float64)
        K_win = np.asarray(pred.intrinsics, np.float64)
        pose_conf = np.ones(S) if pred.pose_confidence is None else np.asarray(pred.pose_confidence, np.float64)
        depth = {i: pred.depth[i] for i in decode}
        conf = {i: pred.confidence[i] for i in decode}

        inliers = float("nan")
        if self._world_mode is None:
            # the first window defines the world
            self._world_mode = "external" if cond is not None else "model"
            self._world_metric = cond is not None or bool(pred.metric)
            sim, status = Sim3.identity(), (AlignmentStatus.EXTERNAL if cond is not None else AlignmentStatus.FIRST_WINDOW)
        elif cond is not None:
            sim, status = Sim3.identity(), AlignmentStatus.EXTERNAL
        else:
            with_scale = not (self._world_metric and pred.metric)
            al = align_to_world(
                [(j, shared[j]) for j in range(first_new)], list(range(first_new, S)),
                c2w_win, K_win, depth, conf, pose_conf, cfg, with_scale, self._prev_scale,
            )
            sim, status, inliers = al.sim3, al.status, al.inliers
        self._prev_scale = sim.scale
        self.n_windows += 1

        results: List[StreamResult] = []
        for i in range(first_new, S):
            e = window[i]
            f = e.frame
            c2w_w = sim.apply_c2w(c2w_win[i])
            depth_w = (depth[i] * np.float32(sim.scale)).astype(np.float32, copy=False)
            if f.intrinsics is not None:
                K_pub, source = np.asarray(f.intrinsics, np.float64).copy(), "camera_info"
            else:
                self._intr.add(K_win[i], f.width, f.height)
                K_pub, source = self._intr.estimate(), "estimated"
            last_kf = self._keyframes[-1] if self._keyframes else None
            e.keyframe = is_new_keyframe(c2w_w, f.stamp, last_kf, cfg)
            e.c2w_world = c2w_w
            if e.keyframe:
                e.store_sample(depth_w, conf[i], K_win[i], c2w_w, cfg)
                self._keyframes.append(e)
            r = StreamResult(
                stamp=float(f.stamp), index=int(f.index), c2w=c2w_w, intrinsics=K_pub, intrinsics_source=source,
                depth=depth_w, confidence=np.asarray(conf[i], np.float32), image=f.image, metric=self._world_metric,
                keyframe=e.keyframe, alignment=status, alignment_scale=float(sim.scale), alignment_inliers=inliers,
                window_fill=S, window_size=cfg.window_size, reset=self._reset_reason,
                min_confidence=cfg.min_confidence, depth_range=tuple(cfg.depth_range),
            )
            self._reset_reason = None
            results.append(r)
            self._traj.append(r.stamp, c2w_w, r.index, r.keyframe)
            if cfg.map_from == "all" or (cfg.map_from == "keyframes" and r.keyframe):
                mask = r.valid_mask()
                xyz, flat = depth_to_points(r.depth, r.intrinsics, r.c2w, mask, cfg.map_pixel_stride)
                self._map.insert(xyz, r.image.reshape(-1, 3)[flat], r.confidence.ravel()[flat], self.n_windows)
        # evict: keep the newest keyframes that fit beside `stride` new frames
        max_kf = cfg.window_size - cfg.stride
        while len(self._keyframes) > max_kf:
            self._keyframes.pop(0).release()
        for e in new:
            if not e.keyframe:
                e.release()
        return results
