"""Configuration of the streaming core (units in the names or docs).

The fields a user sets are settings of `stream.settings.SETTINGS` (same name,
default and meaning, declared there once); the rest tune the core's internals."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Tuple

from .settings import SETTINGS, check_window


def _default(name: str) -> Any:
    value = SETTINGS[name].default
    return tuple(value) if isinstance(value, list) else value


@dataclass
class StreamConfig:
    #: frames (views) per inference window (keyframes + new frames)
    window_size: int = _default("window_size")
    #: new frames per inference (answered together); < window_size so at least
    #: one earlier keyframe links each window to the world
    stride: int = _default("stride")
    #: keyframe when the camera moved this far from the last keyframe, in world
    #: units (metres when the world is metric); 0: not used
    keyframe_translation: float = _default("keyframe_translation")
    #: ... or this fraction of the last keyframe's median depth (scale-free,
    #: works at the arbitrary scale of a relative model); 0: not used
    keyframe_depth_ratio: float = _default("keyframe_depth_ratio")
    #: ... or turned this much, degrees
    keyframe_rotation_deg: float = _default("keyframe_rotation_deg")
    #: ... or this long since the last keyframe, seconds
    keyframe_interval: float = _default("keyframe_interval")
    #: pixels below this DA3 confidence (>= 1) are left out of clouds, map, alignment
    min_confidence: float = _default("min_confidence")
    #: depth range kept in clouds/map/alignment, metres (world units when not metric)
    min_depth: float = _default("min_depth")
    max_depth: float = _default("max_depth")
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
    map_voxel_size: float = _default("map_voxel_size")
    map_max_points: int = _default("map_max_points")
    map_pixel_stride: int = 4
    #: which answered frames feed the map: "keyframes", "all" or "none"
    map_from: str = "keyframes"
    #: True: push() only marks results for the map (StreamResult.in_map) and the
    #: caller inserts them with Streamer.insert_map (the node does it on its
    #: output thread, and only while map/points has a subscriber)
    map_deferred: bool = False
    #: a stamp this far (seconds) past the last one is held until the next frame
    #: confirms the jump (a single corrupt stamp must not derail the timeline)
    max_stamp_jump: float = _default("max_stamp_jump")
    #: the cameras of a rig, the first one the reference of estimated extrinsics;
    #: empty: one camera
    cameras: Tuple[str, ...] = _default("cameras")
    #: images of a rig within this many seconds form one rig frame
    rig_sync_tolerance: float = _default("rig_sync_tolerance")
    #: a rig frame waits at most this long (stamp time) for a late camera
    rig_max_wait: float = _default("rig_max_wait")
    #: the world turns metric from a calibrated rig (Frame.T_base_optical) once the
    #: scale's relative standard error is at most this; it is corrected later only
    #: when a new estimate differs by more than 2 standard errors (and a fifth of this)
    rig_scale_max_error: float = _default("rig_scale_max_error")
    #: ... and at least this many rig frames were seen
    rig_scale_min_frames: int = 10
    #: answered poses kept for trajectory() (oldest dropped beyond this)
    path_max_length: int = _default("path_max_length")
    #: model intrinsics estimates kept for the running median
    intrinsics_history: int = 100

    @classmethod
    def from_settings(cls, cfg: Any, **internal) -> "StreamConfig":
        """The core's configuration from the settings (`stream.settings.Settings`:
        every field of the same name), plus `internal` fields."""
        names = {f.name for f in fields(cls)} - set(internal)
        values = {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}
        values["cameras"] = tuple(values.get("cameras", ()))
        return cls(**values, **internal)

    @property
    def depth_range(self) -> Tuple[float, float]:
        """(min_depth, max_depth)."""
        return (self.min_depth, self.max_depth)

    def __post_init__(self):
        self.cameras = tuple(self.cameras)
        check_window(self.window_size, self.stride, max(len(self.cameras), 1))
        if self.map_from not in ("keyframes", "all", "none"):
            raise ValueError("map_from must be 'keyframes', 'all' or 'none'")
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"min_depth ({self.min_depth}) must be below max_depth ({self.max_depth}), both >= 0")
        if self.map_voxel_size <= 0 or self.map_max_points < 1 or self.path_max_length < 1:
            raise ValueError("map_voxel_size, map_max_points and path_max_length must be positive")
        if not 0 < self.rig_scale_max_error < 1 or self.rig_scale_min_frames < 1:
            raise ValueError("rig_scale_max_error must be in (0, 1) and rig_scale_min_frames >= 1")
        if not self.max_stamp_jump > 0:
            raise ValueError("max_stamp_jump must be positive")
        if self.rig_sync_tolerance < 0 or not self.rig_max_wait > 0:
            raise ValueError("rig_sync_tolerance must be >= 0 and rig_max_wait > 0 (seconds)")
        if self.min_confidence < 0:
            raise ValueError("min_confidence must be >= 0")
        for name in ("keyframe_translation", "keyframe_depth_ratio", "keyframe_rotation_deg"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 (0: off)")
        if not self.keyframe_interval >= 0:
            raise ValueError("keyframe_interval must be >= 0 seconds (0: every answered frame is a keyframe)")
        if self.align_shared_decode < 0:
            raise ValueError("align_shared_decode must be >= 0")
