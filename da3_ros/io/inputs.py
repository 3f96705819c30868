"""The one entry point to the offline inputs: `open_source` picks the reader
for a path (image folder, TUM RGB-D, 7-Scenes, video, rosbag2). It sits above
`sources` (folders, videos, bags) and `datasets` (the layouts built on them),
so neither imports the other's dispatcher."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from . import bags, datasets
from .sources import VIDEO_SUFFIXES, BagSource, FolderSource, PathLike, Source, SourceError, VideoSource

__all__ = ["open_source", "SourceError"]


def open_source(
    path: PathLike,
    image_topic: Optional[str] = None,
    camera_info_topic: Optional[str] = None,
    max_frames: Optional[int] = None,
    rectified: bool = False,
    max_dt: Optional[float] = None,
    tum_intrinsics: str = "auto",
) -> Source:
    """Open an image folder, a dataset layout (TUM RGB-D, 7-Scenes), a video file
    or a rosbag2 as a Source (see module doc).
    `rectified`: a bag's images are rectified (their intrinsics are CameraInfo's P).
    `max_dt`: seconds within which a TUM RGB-D depth image belongs to a colour
    image (default datasets.ASSOCIATION_MAX_DT). `tum_intrinsics`: "auto",
    "fr1", "fr2", "fr3" or "none" (see datasets.TumRgbdSource)."""
    p = Path(path)
    if not p.exists():
        raise SourceError(f"{p}: no such file or directory")
    if bags.is_bag_path(p):
        return BagSource(p, image_topic, camera_info_topic, max_frames, rectified=rectified)
    if image_topic is not None or camera_info_topic is not None or rectified:
        raise SourceError(f"{p}: image_topic/camera_info_topic/rectified are only for rosbag2 inputs")
    if p.is_dir():
        max_dt = datasets.ASSOCIATION_MAX_DT if max_dt is None else float(max_dt)
        if datasets.is_tum_rgbd(p):
            return datasets.TumRgbdSource(p, max_frames, max_dt=max_dt, intrinsics=tum_intrinsics)
        if datasets.is_seven_scenes(p):
            return datasets.SevenScenesSource(p, max_frames)
        source = FolderSource(p, max_frames)
        source.ground_truth = datasets.folder_ground_truth(source)
        return source
    if p.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSource(p, max_frames)
    raise SourceError(
        f"{p}: not an image folder, a video ({' '.join(VIDEO_SUFFIXES)}) or a rosbag2 "
        "(directory with metadata.yaml, .mcap or .db3 file)"
    )


# ---------------------------------------------------------------- image folder
