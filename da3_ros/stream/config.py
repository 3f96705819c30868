"""Configuration of the streaming core (units in the names or docs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass
class StreamConfig:
    #: frames per inference window (keyframes + new frames)
    window_size: int = 8
    #: new frames per inference (answered together); < window_size so at least
    #: one earlier keyframe links each window to the world
    stride: int = 1
    #: keyframe when the camera moved this far from the last keyframe, in world
    #: units (metres when the world is metric); None: not used
    keyframe_translation: Optional[float] = None
    #: ... or this fraction of the last keyframe's median depth (scale-free,
    #: works at the arbitrary scale of a relative model)
    keyframe_translation_depth_ratio: Optional[float] = 0.05
    #: ... or turned this much, degrees
    keyframe_rotation_deg: float = 5.0
    #: ... or this long since the last keyframe, seconds
    keyframe_max_seconds: float = 1.0
    #: pixels below this DA3 confidence (>= 1) are left out of clouds, map, alignment
    min_confidence: float = 1.5
    #: depth range kept in clouds/map/alignment, metres (world units when not metric)
    depth_range: Tuple[float, float] = (0.05, 50.0)
    #: how many of the window's earlier keyframes are decoded again so their
    #: depth maps can align the window (0: align from poses only)
    align_shared_decode: int = 2
    #: sampled pixels per keyframe point map kept for alignment
    align_samples: int = 1024
    #: each shared camera centre counts like this many depth points
    align_centre_weight: float = 100.0
    #: fewer valid depth correspondences than this: align from poses only
    min_align_points: int = 30
    #: pose-only alignment estimates scale only when the shared cameras' baseline
    #: exceeds this fraction of the scene depth; else the previous scale is kept
    min_baseline_ratio: float = 0.02
    #: a depth-based Sim(3) with fewer inliers than this is rejected
    min_inlier_fraction: float = 0.3
    #: use Frame.c2w_external (with intrinsics) for pose-conditioned windows
    use_external_poses: bool = True
    #: world map: voxel edge (world units: metres when metric), point cap, pixel step
    map_voxel_size: float = 0.05
    map_max_points: int = 200_000
    map_pixel_stride: int = 4
    #: which answered frames feed the map: "keyframes", "all" or "none"
    map_from: str = "keyframes"
    #: True: push() only marks results for the map (StreamResult.in_map) and the
    #: caller inserts them with Streamer.insert_map (the node does it on its
    #: output thread, and only while map/points has a subscriber)
    map_deferred: bool = False
    #: a stamp this far (seconds) past the last one is held until the next frame
    #: confirms the jump (a single corrupt stamp must not derail the timeline)
    max_forward_jump_s: float = 10.0
    #: the cameras of a rig, the first one the reference of estimated extrinsics;
    #: empty: one camera
    rig_cameras: Tuple[str, ...] = ()
    #: the world turns metric from a calibrated rig (Frame.T_base_optical) once the
    #: scale's relative standard error is at most this; it is corrected later only
    #: when a new estimate differs by more than 2 standard errors (and a fifth of this)
    rig_scale_max_error: float = 0.01
    #: ... and at least this many rig frames were seen
    rig_scale_min_frames: int = 10
    #: answered poses kept for trajectory() (oldest dropped beyond this)
    trajectory_cap: int = 10_000
    #: model intrinsics estimates kept for the running median
    intrinsics_history: int = 100

    def __post_init__(self):
        if self.window_size < 2:
            raise ValueError("window_size must be >= 2")
        if not 1 <= self.stride < self.window_size:
            raise ValueError("stride must be in [1, window_size - 1]")
        if self.map_from not in ("keyframes", "all", "none"):
            raise ValueError("map_from must be 'keyframes', 'all' or 'none'")
        lo, hi = self.depth_range
        if not 0 <= lo < hi:
            raise ValueError("depth_range must be (near, far) with 0 <= near < far")
        if self.map_voxel_size <= 0 or self.map_max_points < 1 or self.trajectory_cap < 1:
            raise ValueError("map_voxel_size, map_max_points and trajectory_cap must be positive")
        if not 0 < self.rig_scale_max_error < 1 or self.rig_scale_min_frames < 1:
            raise ValueError("rig_scale_max_error must be in (0, 1) and rig_scale_min_frames >= 1")
        if not self.max_forward_jump_s > 0:
            raise ValueError("max_forward_jump_s must be positive")
        if self.min_confidence < 0:
            raise ValueError("min_confidence must be >= 0")
        for name in ("keyframe_translation", "keyframe_translation_depth_ratio"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None (off)")
        if self.keyframe_rotation_deg < 0 or self.keyframe_max_seconds < 0:
            raise ValueError("keyframe_rotation_deg and keyframe_max_seconds must be >= 0")
        if self.align_shared_decode < 0:
            raise ValueError("align_shared_decode must be >= 0")
