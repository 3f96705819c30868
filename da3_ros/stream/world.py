"""Where things are: the stream's frame, the published world and what lives in
them (a window is placed in the stream frame by stream.placement).

Frames, from the network out:
  * window frame: whatever frame the model answered a window in (DA3: its
    reference view), arbitrary scale;
  * stream frame: the first window's frame (or, with external poses, the
    external odometry's frame); every later window is placed in it by a Sim(3)
    (`align_window`), so poses and depth keep one scale;
  * published world (`world_frame`, REP 105 odom): the stream frame moved so
    that it starts at the body frame of the first answered camera
    (`WorldAnchor`): x forward, y left, z up, or the robot's base frame when its
    transform to the camera is known; identity with external odometry.

The world (`World`) owns what is placed in it: the anchor, the map, the one
trajectory (the path output, ~/save and the writers read it), the stream's
unit and its rescaling.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

from ..geometry.camera import transform_points
from ..geometry.transforms import T_BODY_OPTICAL, Sim3, inv_se3
from .config import StreamConfig
from .interface import WindowPrediction
from .placement import Alignment, align_window  # noqa: F401 - the placement of a window, re-exported
from .result import AlignmentStatus, StreamResult
from .trajectory import Trajectory, TrajectoryBuffer
from .world_map import VoxelMap


class WorldAnchor:
    """The stream frame in the published world: T_world_stream, set by the first
    answered frame and kept until a reset."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.T_world_stream: Optional[np.ndarray] = None
        self._T_base: Optional[np.ndarray] = None  # the first frame's base -> optical (metres)
        self._c2w_first: Optional[np.ndarray] = None  # the first frame in the stream frame

    def anchor(self, c2w_stream_first: np.ndarray, T_base_optical: Optional[np.ndarray], external: bool) -> None:
        """Anchor at the first answered frame: its base (or REP 103 camera body)
        frame becomes the world origin; with external poses the stream frame
        already is the world."""
        if external:
            self.T_world_stream = np.eye(4)
            return
        self._T_base = T_BODY_OPTICAL if T_base_optical is None else np.asarray(T_base_optical, np.float64)
        self._c2w_first = np.asarray(c2w_stream_first, np.float64).copy()
        self.T_world_stream = self._T_base @ inv_se3(self._c2w_first)

    def rescale(self, factor: float) -> None:
        """The stream frame's unit changed by `factor`: the same anchor in the new
        unit (the base -> optical offset is metres already and stays)."""
        if self._c2w_first is not None:
            self._c2w_first[:3, 3] *= factor
            self.T_world_stream = self._T_base @ inv_se3(self._c2w_first)

    def to_world(self, c2w_stream: np.ndarray) -> np.ndarray:
        """A pose in the stream frame -> the same pose in the published world."""
        T = np.eye(4) if self.T_world_stream is None else self.T_world_stream
        return T @ c2w_stream

    def points_to_world(self, xyz_stream: np.ndarray) -> np.ndarray:
        """(N,3) stream-frame points -> published world, float64."""
        T = np.eye(4) if self.T_world_stream is None else self.T_world_stream
        return transform_points(T, np.asarray(xyz_stream, np.float64).reshape(-1, 3))


class World:
    """The stream's world: windows placed in it (`place`), its anchor in the
    published world, the map, the ONE trajectory (one pose per answered rig
    frame; the path output, ~/save and the writers read it), its unit and the
    rescaling of all of them when a rig fixes the unit in metres.

    Thread use: `place`, `rescale`, `record`, `reset` from the streaming thread;
    the map and the trajectory may be read (and the map filled) from another
    (they share a lock)."""

    def __init__(self, cfg: StreamConfig):
        self._lock = threading.Lock()
        self._map = VoxelMap(cfg.map_voxel_size, cfg.map_max_points)
        self._traj = TrajectoryBuffer(cfg.path_max_length)
        self.anchor = WorldAnchor()
        self.reset()

    def reset(self) -> None:
        #: None before the first window, then "model" or "external"
        self.mode: Optional[str] = None
        #: True once the stream frame is in metres (metric model, external poses, a calibrated rig)
        self.metric = False
        self.prev_scale = 1.0  # the last window's window -> stream scale
        self.n_windows = 0
        self._rescaled = 1.0  # the unit's change not yet told to a result
        #: the stream frame's unit since the reset, as a factor (results carry the value
        #: they were answered at, so a map insert that lags a rescale is brought to it)
        self.unit = 1.0
        with self._lock:
            self._map.clear()
            self._traj.clear()
        self.anchor.reset()

    # ------------------------------------------------------------ placement

    def place(self, pred: WindowPrediction, cond: Any, n_shared: int, cfg: StreamConfig,
              samples: List[Tuple[int, Any]]) -> Tuple[Sim3, str, float]:
        """The window -> stream Sim(3), how it was found, and its inlier fraction.
        The first window defines the stream frame; a pose-conditioned one (`cond`)
        is in it already; any other is aligned on the shared keyframes' `samples`."""
        S = len(pred.c2w)
        inliers = float("nan")
        if self.mode is None:
            self.mode = "external" if cond is not None else "model"
            self.metric = cond is not None or bool(pred.metric)
            sim, status = Sim3.identity(), (AlignmentStatus.EXTERNAL if cond is not None else AlignmentStatus.FIRST_WINDOW)
        elif cond is not None:
            sim, status = Sim3.identity(), AlignmentStatus.EXTERNAL
        else:
            pose_conf = np.ones(S) if pred.pose_confidence is None else np.asarray(pred.pose_confidence, np.float64)
            al = align_window(
                samples, list(range(n_shared, S)), np.asarray(pred.c2w, np.float64),
                np.asarray(pred.intrinsics, np.float64), pred.depth, pred.confidence, pose_conf, cfg,
                not (self.metric and pred.metric), self.prev_scale,
            )
            sim, status, inliers = al.sim3, al.status, al.inliers
        self.prev_scale = sim.scale
        self.n_windows += 1
        return sim, status, inliers

    def anchor_at(self, c2w: np.ndarray, T_base_optical: Optional[np.ndarray]) -> None:
        """The first answered frame anchors the published world (once per reset)."""
        if self.anchor.T_world_stream is None:
            self.anchor.anchor(c2w, T_base_optical, external=self.mode == "external")

    def rescale(self, factor: float) -> None:
        """The stream frame's unit times `factor`: trajectory, map, anchor (the
        caller rescales what it keeps: keyframes, the rig's observations)."""
        with self._lock:
            self._traj.rescale(factor)
            self._map.rescale(factor)
            self.unit *= factor
        self.anchor.rescale(factor)
        self.prev_scale *= factor
        self._rescaled *= factor

    def take_rescaled(self) -> float:
        """The unit's change since the last call (1: none), for the next result."""
        factor, self._rescaled = self._rescaled, 1.0
        return factor

    # ------------------------------------------------------------ map and trajectory

    def record(self, result: StreamResult) -> None:
        """A rig frame's pose (its primary view's result) into the trajectory."""
        with self._lock:
            self._traj.append(result.stamp, result.c2w, result.index, result.keyframe)

    def insert_map(self, results: Sequence[StreamResult], pixel_stride: int) -> None:
        """Results' valid points into the map as one insert (a map worker that fell
        behind hands over its whole backlog: the cost is the points', not the calls').
        Points answered before a rescale are brought to the current unit."""
        parts = [(r.pixel_points(pixel_stride), r) for r in results]  # only the map's pixels are read
        if not parts:
            return
        with self._lock:
            xyz = np.concatenate([p[0] * (self.unit / r.world_unit) if r.world_unit != self.unit else p[0]
                                  for p, r in parts])
            rgb = np.concatenate([r.image.reshape(-1, 3)[p[1]] for p, r in parts])
            conf = np.concatenate([r.confidence.ravel()[p[1]] for p, r in parts])
            self._map.insert(xyz, rgb, conf, self.n_windows)

    def map_points(self, frame: str = "stream") -> Tuple[np.ndarray, np.ndarray]:
        """(xyz (M,3), rgb (M,3) uint8) in the "stream" frame (float32) or the
        published "world" (float64)."""
        with self._lock:
            xyz, rgb = self._map.points()
        return (self.anchor.points_to_world(xyz), rgb) if frame == "world" else (xyz, rgb)

    def trajectory(self, frame: str = "stream") -> Trajectory:
        """The answered poses (optical frame of each rig frame's first camera) in
        the "stream" frame or the published "world", oldest first."""
        with self._lock:
            traj = self._traj.get()
        if frame == "world" and len(traj):
            T = np.eye(4) if self.anchor.T_world_stream is None else self.anchor.T_world_stream
            traj.c2w = T @ traj.c2w
        return traj

    @property
    def map_size(self) -> int:
        return len(self._map)
