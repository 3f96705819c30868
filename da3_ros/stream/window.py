"""The sliding window: keyframes kept for overlap, new frames waiting for the
next inference, the per-frame model handles and the keyframe policy. Views go
to the model in chronological order: the model picks its reference view."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, List, Optional, Sequence

import numpy as np

from ..geometry.camera import backproject, resize_bilinear, scale_intrinsics, transform_points
from ..geometry.transforms import rotation_angle_deg
from .config import StreamConfig
from .interface import Frame


@dataclass
class WindowEntry:
    """One frame in the window. `handle` is the model's per-frame cache; it is
    set to None (and the entry dropped) when the frame leaves the window."""

    frame: Frame
    handle: Any
    #: the rig frame it belongs to (one per push; views of one instant share it)
    group: int = 0
    keyframe: bool = False
    #: pose of the optical frame in the stream frame, once answered
    c2w_stream: Optional[np.ndarray] = None
    #: point-map sample kept for aligning later windows (stream frame): pixel
    #: coordinates (M,2) (u, v; sub-pixel after a resize), points (M,3), z-depth
    #: (M,) world units, confidence (M,)
    sample_uv: Optional[np.ndarray] = None
    sample_xyz: Optional[np.ndarray] = None
    sample_depth: Optional[np.ndarray] = None
    sample_conf: Optional[np.ndarray] = None
    #: median valid z-depth in world units (scale-free keyframe threshold)
    median_depth: float = float("nan")

    @property
    def stamp(self) -> float:
        return self.frame.stamp

    def release(self) -> None:
        """Drop the model's cache (and the sample) so they can be freed."""
        self.handle = None
        self.sample_uv = self.sample_xyz = self.sample_depth = self.sample_conf = None

    def resize(self, frame: Frame, handle: Any) -> None:
        """The same keyframe at another image size (re-encoded): its point-map
        sample's pixel coordinates follow the image (pixel-centre convention)."""
        if self.sample_uv is not None:
            scale = np.array([frame.width / self.frame.width, frame.height / self.frame.height])
            self.sample_uv = (self.sample_uv + 0.5) * scale - 0.5
        self.frame, self.handle = frame, handle

    def rescale(self, factor: float) -> None:
        """Stream-frame quantities times `factor` (the world's unit changed)."""
        if self.c2w_stream is not None:
            self.c2w_stream = self.c2w_stream.copy()
            self.c2w_stream[:3, 3] *= factor
        if self.sample_xyz is not None:
            self.sample_xyz = self.sample_xyz * factor
            self.sample_depth = self.sample_depth * factor
        self.median_depth *= factor

    def store_sample(self, depth_w: np.ndarray, conf: np.ndarray, K: np.ndarray, c2w_s: np.ndarray, cfg: StreamConfig) -> None:
        """Keep a sparse grid of this frame's stream-frame points for aligning later windows."""
        h, w = depth_w.shape
        step = max(1, int(round(np.sqrt(h * w / max(cfg.align_samples, 1)))))
        vs = np.arange(step // 2, h, step)
        us = np.arange(step // 2, w, step)
        vv, uu = np.meshgrid(vs, us, indexing="ij")
        pix = (vv * w + uu).ravel()
        d = depth_w.ravel()[pix]
        c = conf.ravel()[pix]
        lo, hi = cfg.depth_range
        ok = np.isfinite(d) & (d > lo) & (d < hi) & (c >= cfg.min_confidence)
        pix, d, c = pix[ok], d[ok].astype(np.float64), c[ok]
        u = (pix % w).astype(np.float64)
        v = (pix // w).astype(np.float64)
        self.sample_uv = np.stack([u, v], axis=1)
        self.sample_xyz = transform_points(c2w_s, backproject(d, u, v, K))
        self.sample_depth = d
        self.sample_conf = c.astype(np.float64)
        # the scene's median depth from every 4th pixel each way: a 640x480 frame's median
        # cost 2-3 ms of the answer path in full, and 19,200 pixels pin it as well
        coarse = depth_w[::4, ::4]
        valid = coarse[np.isfinite(coarse) & (coarse > 0)]
        self.median_depth = float(np.median(valid)) if valid.size else float("nan")


def is_new_keyframe(c2w_s: np.ndarray, stamp: float, last: Optional[WindowEntry], cfg: StreamConfig) -> bool:
    """Keyframe when moved/turned enough or enough time passed since the last
    keyframe (the first frame always is)."""
    if last is None or last.c2w_stream is None:
        return True
    if stamp - last.stamp >= cfg.keyframe_interval:
        return True
    dist = float(np.linalg.norm(c2w_s[:3, 3] - last.c2w_stream[:3, 3]))
    if cfg.keyframe_translation and dist >= cfg.keyframe_translation:
        return True
    if cfg.keyframe_depth_ratio and np.isfinite(last.median_depth):
        if dist >= cfg.keyframe_depth_ratio * last.median_depth:
            return True
    angle = float(rotation_angle_deg(last.c2w_stream[:3, :3].T @ c2w_s[:3, :3]))
    return angle >= cfg.keyframe_rotation_deg


def shared_to_decode(shared: Sequence[WindowEntry], count: int) -> List[int]:
    """Indices (into `shared`) of the views of the newest `count` keyframes (rig
    frames) that have a point-map sample: their depth is decoded again to align
    the window."""
    if count <= 0:
        return []
    have = [i for i, e in enumerate(shared) if e.sample_uv is not None and len(e.sample_uv) > 0]
    groups = sorted({shared[i].group for i in have})[-count:]
    return [i for i in have if shared[i].group in groups]


class Keyframes:
    """The keyframes kept for overlap, oldest first: whole rig frames (entries
    of one `group`), each with its model handle and point-map sample."""

    def __init__(self):
        self.entries: List[WindowEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def add(self, entry: WindowEntry) -> None:
        self.entries.append(entry)

    def clear(self) -> None:
        for e in self.entries:
            e.release()
        self.entries = []

    def last(self, camera: str) -> Optional[WindowEntry]:
        """The camera's newest keyframe."""
        return next((e for e in reversed(self.entries) if e.frame.camera == camera), None)

    def shared(self, room: int) -> List[WindowEntry]:
        """The newest keyframes that fit in `room` views beside the new ones:
        whole rig frames, newest first; at least one view when any exists."""
        if room <= 0 or not self.entries:
            return []
        groups: dict = {}
        for e in self.entries:
            groups.setdefault(e.group, []).append(e)
        shared: List[WindowEntry] = []
        for group in sorted(groups, reverse=True):
            if len(shared) + len(groups[group]) > room:
                break
            shared = groups[group] + shared
        return shared or self.entries[-room:]

    def evict(self, room: int) -> None:
        """Keep the newest keyframes that fit in `room` views (at least one),
        oldest rig frames first."""
        while len(self.entries) > max(room, 1):
            oldest = self.entries[0].group
            while self.entries and self.entries[0].group == oldest and len(self.entries) > max(room, 1):
                self.entries.pop(0).release()

    def rescale(self, factor: float) -> None:
        for e in self.entries:
            e.rescale(factor)

    def resize(self, camera: str, width: int, height: int, encode) -> None:
        """Re-encode the camera's keyframes at width x height (`encode`: the
        model's) so the next window can share them with the new frames (a
        window's views have one size)."""
        for e in self.entries:
            if e.frame.camera != camera:
                continue
            old = e.frame
            sx, sy = width / old.width, height / old.height
            K = None if old.intrinsics is None else scale_intrinsics(old.intrinsics, sx, sy)
            frame = replace(old, image=resize_bilinear(old.image, width, height), intrinsics=K)
            e.resize(frame, encode(frame))
