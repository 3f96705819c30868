"""What the stream answers per frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..geometry.camera import backproject, transform_points


class AlignmentStatus:
    """How a window was placed in the world (StreamResult.alignment)."""

    #: the first window after start/reset defines the world (identity)
    FIRST_WINDOW = "first_window"
    #: pose-conditioned window: already in the external odometry frame (metres)
    EXTERNAL = "external_poses"
    #: robust Sim(3) from shared depth point maps and camera centres
    SIM3 = "sim3"
    #: the same with the scale fixed at 1 (metric model in a metric world)
    SE3_METRIC = "se3_metric"
    #: no usable shared depth: Sim(3) from >= 2 shared poses with enough baseline
    POSES = "sim3_poses"
    #: no usable shared depth and no baseline (pure rotation, static camera,
    #: one shared frame): rotation and position from the shared poses, scale
    #: from the new frames' depth against the keyframes' reprojected points
    ROTATION_DEPTH_SCALE = "rotation_depth_scale"
    #: ... and not even that: the previous window's scale kept
    ROTATION_SCALE_KEPT = "rotation_only_scale_kept"


@dataclass
class StreamResult:
    """One answered frame. Poses are of the optical frame (x right, y down,
    z forward): `c2w` in the stream frame (the first window's reference camera,
    or the external odometry frame in pose-conditioned mode), `T_world_optical`
    in the published world (see stream.world)."""

    stamp: float  # seconds, the frame's capture stamp
    index: int  # the Frame's index
    c2w: np.ndarray  # (4,4) float64, optical frame -> stream frame
    T_world_optical: np.ndarray  # (4,4) float64, optical frame -> published world
    intrinsics: np.ndarray  # (3,3) float64, pixels at native resolution
    #: "camera_info" (true intrinsics given with the frame) or "estimated"
    #: (running median of the model's answers)
    intrinsics_source: str
    depth: np.ndarray  # (H,W) float32 z-depth; metres when `metric`, else world units
    confidence: np.ndarray  # (H,W) float32, DA3 confidence (>= 1)
    image: np.ndarray  # (H,W,3) uint8 RGB (the frame's own array, not copied)
    metric: bool  # depth and translations in metres
    keyframe: bool
    alignment: str  # AlignmentStatus value of the window that answered this frame
    #: window units -> world units factor applied to this window (1 when exact)
    alignment_scale: float
    #: Huber-inlier fraction of the depth alignment (nan when not depth-based)
    alignment_inliers: float
    window_fill: int  # frames in the window that answered
    window_size: int
    #: why the stream was reset before this frame ("time_backwards",
    #: "reset_called", or the reason given to Streamer.reset), else None
    reset: Optional[str] = None
    min_confidence: float = 1.0
    depth_range: Tuple[float, float] = (0.0, np.inf)
    #: the Streamer's reset count when answered (a result from before a reset is stale)
    epoch: int = 0
    #: the Frame's `meta`, unchanged
    meta: Any = None
    #: this result feeds the world map (StreamConfig.map_from)
    in_map: bool = False
    #: the world's unit was multiplied by this just before this result (a rig's
    #: metric scale applied); earlier published positions scale the same way
    world_rescaled: float = 1.0
    #: the world's unit when answered (`World.unit`): the map brings a result
    #: inserted after a later rescale to the unit of the time
    world_unit: float = 1.0
    #: the first view of its rig frame (a single camera's every frame): it carries
    #: the rig's pose (trajectory, odometry, TF)
    primary: bool = True

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    def valid_mask(self, min_confidence: Optional[float] = None, depth_range: Optional[Tuple[float, float]] = None,
                   stride: int = 1) -> np.ndarray:
        """Pixels with finite depth inside the depth range and enough confidence,
        on every `stride`-th row/column ((ceil(H/stride), ceil(W/stride)))."""
        c = self.min_confidence if min_confidence is None else min_confidence
        lo, hi = self.depth_range if depth_range is None else depth_range
        d, conf = self.depth, self.confidence
        if stride > 1:
            d, conf = d[::stride, ::stride], conf[::stride, ::stride]
        # NaN and +-inf fail one of the range comparisons: no isfinite pass needed
        return (d > lo) & (d < hi) & (conf >= c)

    def pixel_points(self, stride: int = 1, frame: str = "world", min_confidence: Optional[float] = None,
                     depth_range: Optional[Tuple[float, float]] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(xyz (N,3) float64, flat pixel indices (N,) into the image) of the valid
        pixels on every `stride`-th row/column, in the "optical" frame or the
        "world" frame (the stream frame, `c2w`). Only the sampled pixels are read."""
        if frame not in ("optical", "world"):
            raise ValueError("frame must be 'optical' or 'world'")
        stride = max(1, int(stride))
        lo, hi = self.depth_range if depth_range is None else depth_range
        ok = self.valid_mask(min_confidence, (max(lo, 0.0), hi), stride)  # and depth > 0
        vv, uu = np.nonzero(ok)
        v, u = vv * stride, uu * stride
        pts = backproject(self.depth[v, u], u.astype(np.float64), v.astype(np.float64), self.intrinsics)
        if frame == "world":
            pts = transform_points(self.c2w, pts)
        return pts, v * self.depth.shape[1] + u

    def point_cloud(
        self,
        frame: str = "world",
        min_confidence: Optional[float] = None,
        depth_range: Optional[Tuple[float, float]] = None,
        stride: int = 1,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """(xyz (N,3) float32, rgb (N,3) uint8) of the valid pixels on every
        `stride`-th row/column, in the "optical" frame or the "world" frame."""
        pts, flat = self.pixel_points(stride, frame, min_confidence, depth_range)
        return pts.astype(np.float32), self.image.reshape(-1, 3)[flat]
