"""Offline camera streams: an image folder, a video file or a rosbag2.

`io.inputs.open_source(path)` picks the kind from the path and returns a `Source`, an
iterable of `SourceFrame` (re-iterable: each `iter()` starts from the first
frame). Images are HxWx3 uint8 RGB, C-contiguous and writable.

Image folder layout:
    frames/
      000000.png, 000001.jpg, ...   *.png / *.jpg / *.jpeg, natural sort order
                                    (frame2 before frame10)
      timestamps.txt   (optional)   either one stamp in seconds per line, in
                                    image order, or "<file name> <stamp>" lines;
                                    '#' lines and blank lines are ignored.
                                    Without it: stamp = index / 30.0 s.
      intrinsics.json  (optional)   {"fx": .., "fy": .., "cx": .., "cy": ..} or
                                    {"K": [[..],[..],[..]]}, pixels at the images'
                                    own resolution; used for every frame.
      depth/           (optional)   ground-truth depth per image, same file stem:
                                    16-bit PNG in millimetres (0 = none) or
                                    float .npy in metres
      groundtruth.txt  (optional)   ground-truth trajectory (TUM format, the
                                    images' stamps; also groundtruth.tum)

Video (.mp4 .avi .mkv .mov .webm): needs PyAV (`pip install av`); stamps are the
frames' presentation times in seconds; no intrinsics.

Dataset layouts with ground truth (da3_ros.io.datasets): a TUM RGB-D sequence
(rgb.txt, depth.txt, groundtruth.txt) and a 7-Scenes sequence folder
(frame-XXXXXX.color.png / .depth.png / .pose.txt). A source's `ground_truth`
(None for video and bags) holds its depth and trajectory for evaluation.

rosbag2 (directory with metadata.yaml, or a .mcap / .db3 file): images from a
sensor_msgs/Image or CompressedImage topic, stamps from their headers, K from
the latest CameraInfo whose header stamp is at or before the image's.
Messages that cannot be decoded are skipped with a logged warning.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import bags
from .camera_info import CameraInfoError, CameraInfoReader
from .images import ImageDecodeError, decode_compressed, decode_image, pil_to_rgb

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
DEFAULT_FOLDER_FPS = 30.0
MAX_SKIP_WARNINGS = 5  # per iteration; then one summary line (a wrong topic would flood the log)


class SourceError(ValueError):
    """A path or option that does not describe a usable camera stream."""


@dataclass
class SourceFrame:
    """One frame of an offline stream.

    stamp: capture time, seconds. image: HxWx3 uint8 RGB.
    intrinsics: 3x3 float64 pinhole K in pixels of this image, or None.
    index: the frame's position in an image list (folders, datasets: the key
        of its ground truth), else None.
    frame_id: the camera's optical frame (a bag's image header), else "".
    """

    stamp: float
    image: np.ndarray
    intrinsics: Optional[np.ndarray] = None
    index: Optional[int] = None
    frame_id: str = ""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


class Source:
    """Iterable of SourceFrame. `kind` is "folder", "video" or "bag".

    `len()` works when the frame count is known up front (`length` is not
    None); for bags it counts image messages, an upper bound if some are bad.
    """

    kind: str = ""

    def __init__(self, path: PathLike, max_frames: Optional[int] = None):
        if max_frames is not None and max_frames < 0:
            raise SourceError(f"max_frames must be >= 0, got {max_frames}")
        self.path = Path(path)
        self.max_frames = max_frames
        self.length: Optional[int] = None
        #: da3_ros.io.datasets.GroundTruth of the layout, when it has any
        self.ground_truth = None

    def __iter__(self) -> Iterator[SourceFrame]:
        if self.max_frames == 0:
            return
        # closing(): stopping at max_frames closes the bag/video at once, not at garbage collection
        with closing(self._frames()) as frames:
            for count, frame in enumerate(frames, start=1):
                yield frame
                if self.max_frames is not None and count >= self.max_frames:
                    return

    def __len__(self) -> int:
        if self.length is None:
            # TypeError is what len() raises for unsized objects; list() then ignores it
            raise TypeError(f"{self.kind} source {self.path} has no known length")
        return self.length if self.max_frames is None else min(self.length, self.max_frames)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} {str(self.path)!r} length={self.length}>"

    def _frames(self) -> Iterator[SourceFrame]:
        raise NotImplementedError


def _natural_key(name: str) -> Tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def read_intrinsics_json(path: Path) -> np.ndarray:
    try:
        data = json.loads(path.read_text())
        if "K" in data:
            K = np.asarray(data["K"], dtype=np.float64).reshape(3, 3)
        else:
            K = np.array(
                [[data["fx"], 0.0, data["cx"]], [0.0, data["fy"], data["cy"]], [0.0, 0.0, 1.0]], dtype=np.float64
            )
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f'{path}: expected {{"fx","fy","cx","cy"}} or {{"K": 3x3}}: {exc!r}') from exc
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SourceError(f"{path}: focal lengths must be finite and > 0, got K={K.tolist()}")
    return K


def _read_timestamps(path: Path, names: Sequence[str]) -> List[float]:
    """Stamps for `names` from timestamps.txt: plain stamps in order, or 'name stamp' lines."""
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    try:
        if all(len(ln.split()) == 1 for ln in lines):
            stamps = [float(ln) for ln in lines]
            if len(stamps) != len(names):
                raise SourceError(f"{path}: {len(stamps)} stamps for {len(names)} images")
            return stamps
        by_name: Dict[str, float] = {}
        for ln in lines:
            fields = ln.split()
            if len(fields) != 2:
                raise SourceError(f"{path}: line {ln!r} is not '<name> <stamp>'")
            by_name[fields[0]] = float(fields[1])
    except ValueError as exc:
        if isinstance(exc, SourceError):
            raise
        raise SourceError(f"{path}: not a number: {exc}") from exc
    missing = [n for n in names if n not in by_name]
    if missing:
        raise SourceError(f"{path}: no stamp for {len(missing)} image(s), e.g. {missing[:3]}")
    return [by_name[n] for n in names]


def read_rgb(file: PathLike) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (raises OSError / ValueError when unreadable)."""
    from PIL import Image

    try:
        with Image.open(file) as img:
            img.load()
            return pil_to_rgb(img)
    except SyntaxError as exc:  # PIL's word for some corrupt files
        raise ValueError(str(exc)) from exc


class ImageListSource(Source):
    """A list of image files with their stamps (seconds) and one K (or None).
    Frames carry their position in the list as `index`; unreadable images are
    skipped with a warning."""

    kind = "images"

    def __init__(self, path: PathLike, files: Sequence[Path], stamps: Sequence[float],
                 intrinsics: Optional[np.ndarray] = None, max_frames: Optional[int] = None):
        super().__init__(path, max_frames)
        if len(files) != len(stamps):
            raise SourceError(f"{path}: {len(stamps)} stamps for {len(files)} images")
        self.files = [Path(f) for f in files]
        self.stamps = [float(t) for t in stamps]
        self.intrinsics = intrinsics
        self.length = len(self.files)

    def _frames(self) -> Iterator[SourceFrame]:
        for i, (file, stamp) in enumerate(zip(self.files, self.stamps)):
            try:
                image = read_rgb(file)
            except (OSError, ValueError) as exc:
                log.warning("skipping unreadable image %s: %s", file, exc)
                continue
            K = None if self.intrinsics is None else self.intrinsics.copy()
            yield SourceFrame(stamp=float(stamp), image=image, intrinsics=K, index=i)


class FolderSource(ImageListSource):
    kind = "folder"

    def __init__(self, path: PathLike, max_frames: Optional[int] = None):
        path = Path(path)
        files = sorted(
            (f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda f: _natural_key(f.name),
        )
        if not files:
            raise SourceError(f"{path}: folder has no {'/'.join(IMAGE_SUFFIXES)} images")
        names = [f.name for f in files]
        stamps_file = path / "timestamps.txt"
        if stamps_file.is_file():
            stamps = _read_timestamps(stamps_file, names)
        else:
            stamps = [i / DEFAULT_FOLDER_FPS for i in range(len(names))]
        K_file = path / "intrinsics.json"
        K = read_intrinsics_json(K_file) if K_file.is_file() else None
        super().__init__(path, files, stamps, K, max_frames)


# ---------------------------------------------------------------- video


def _import_av():
    try:
        import av
    except ImportError as exc:
        raise SourceError("video input needs PyAV: pip install av") from exc
    return av


class VideoSource(Source):
    kind = "video"

    def __init__(self, path: PathLike, max_frames: Optional[int] = None):
        super().__init__(path, max_frames)
        av = _import_av()
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise SourceError(f"{self.path}: no video stream")
                stream = container.streams.video[0]
                self.length = int(stream.frames) or None  # 0 = the container does not say
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else DEFAULT_FOLDER_FPS
        except av.error.FFmpegError as exc:
            raise SourceError(f"{self.path}: cannot open video: {exc}") from exc

    def _frames(self) -> Iterator[SourceFrame]:
        av = _import_av()
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = 0
            # decode packet by packet so one corrupt packet costs one frame, not the stream
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    log.warning("%s: skipping undecodable video packet: %s", self.path, exc)
                    continue
                for frame in decoded:
                    stamp = frame.time if frame.time is not None else index / self.fps
                    index += 1
                    yield SourceFrame(stamp=float(stamp), image=frame.to_ndarray(format="rgb24"))


# ---------------------------------------------------------------- rosbag2


def _pick_topic(wanted: Optional[str], topics: Dict[str, str], types: Sequence[str], what: str, path: Path) -> Optional[str]:
    """The requested topic (checked), or the only topic of `types` when not requested."""
    candidates = sorted(t for t, ty in topics.items() if ty in types)
    if wanted is not None:
        if wanted not in topics:
            raise SourceError(f"{path}: no topic {wanted!r}; {what} topics: {candidates or 'none'}")
        if topics[wanted] not in types:
            raise SourceError(f"{path}: topic {wanted!r} has type {topics[wanted]}, expected {' or '.join(types)}")
        return wanted
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return None
    raise SourceError(f"{path}: several {what} topics, choose one: {candidates}")


def _sibling_camera_info(image_topic: str, topics: Dict[str, str]) -> Optional[str]:
    """`/cam/image_raw` -> `/cam/camera_info` when the bag has it (image_transport convention)."""
    sibling = image_topic.rsplit("/", 1)[0] + "/camera_info"
    return sibling if topics.get(sibling) == bags.CAMERA_INFO else None


def _decode_image_msg(msg, msgtype: str) -> np.ndarray:
    if msgtype == bags.COMPRESSED_IMAGE:
        return decode_compressed(msg.format, msg.data)
    image = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)
    # views into the message buffer are read-only / strided: hand the stream an owned array
    return np.array(image, order="C", copy=True)


class BagSource(Source):
    kind = "bag"

    def __init__(
        self,
        path: PathLike,
        image_topic: Optional[str] = None,
        camera_info_topic: Optional[str] = None,
        max_frames: Optional[int] = None,
        distro: str = "humble",
        rectified: bool = False,
    ):
        super().__init__(path, max_frames)
        self.typestore = bags.get_typestore(distro)
        self._camera_info = CameraInfoReader(rectified)
        try:
            with bags.open_reader(self.path) as reader:
                listed = bags.list_topics(reader)
        except bags.BagError as exc:
            raise SourceError(str(exc)) from exc
        topics = {t.name: t.msgtype for t in listed}
        chosen = _pick_topic(image_topic, topics, bags.IMAGE_TYPES, "image", self.path)
        if chosen is None:
            raise SourceError(f"{self.path}: no sensor_msgs/Image or CompressedImage topic; topics: {topics}")
        self.image_topic = chosen
        self.image_type = topics[chosen]
        if camera_info_topic is None and sum(ty == bags.CAMERA_INFO for ty in topics.values()) > 1:
            camera_info_topic = _sibling_camera_info(chosen, topics)
        self.camera_info_topic = _pick_topic(camera_info_topic, topics, (bags.CAMERA_INFO,), "CameraInfo", self.path)
        self.length = sum(t.message_count for t in listed if t.name == chosen)

    def _camera_infos(self, reader) -> Tuple[List[int], list]:
        """All CameraInfo messages sorted by header stamp (ns).

        Read up front because a CameraInfo is often recorded just after the
        image with the same stamp; bag order alone would miss it.
        """
        infos = []
        if self.camera_info_topic is None:
            return [], []
        for m in bags.iter_messages(reader, [self.camera_info_topic]):
            try:
                msg = bags.deserialize(self.typestore, m.rawdata, m.msgtype)
            except Exception as exc:  # rosbags raises assorted errors on bad CDR
                log.warning("%s: skipping bad CameraInfo at %d ns: %s", self.path, m.timestamp_ns, exc)
                continue
            infos.append((bags.stamp_to_ns(msg.header.stamp), msg))
        infos.sort(key=lambda item: item[0])
        return [s for s, _ in infos], [msg for _, msg in infos]

    def _intrinsics(self, info, width: int, height: int) -> Optional[np.ndarray]:
        """K of the image from its CameraInfo (None: unusable, then estimated); what is
        wrong or remarkable is logged once per distinct text."""
        try:
            K, notes = self._camera_info.read(info, width, height)
        except CameraInfoError as exc:
            K, notes = None, self._camera_info.fresh([f"ignoring CameraInfo, estimating intrinsics instead: {exc}"])
        for note in notes:
            log.warning("%s: %s", self.path, note)
        return K

    def _frames(self) -> Iterator[SourceFrame]:
        with bags.open_reader(self.path) as reader:
            info_stamps, infos = self._camera_infos(reader)
            skipped = 0
            for m in bags.iter_messages(reader, [self.image_topic]):
                try:
                    msg = bags.deserialize(self.typestore, m.rawdata, m.msgtype)
                    image = _decode_image_msg(msg, m.msgtype)
                except Exception as exc:  # ImageDecodeError, or assorted rosbags errors on bad CDR
                    skipped += 1
                    if skipped <= MAX_SKIP_WARNINGS:
                        what = "image" if isinstance(exc, ImageDecodeError) else "undecodable message"
                        log.warning("%s: skipping %s at %d ns on %s: %s",
                                    self.path, what, m.timestamp_ns, self.image_topic, exc)
                    continue
                stamp_ns = bags.stamp_to_ns(msg.header.stamp)
                if stamp_ns == 0:
                    # unstamped publisher: the recording time is the best we have
                    stamp_ns = m.timestamp_ns
                K = None
                i = bisect.bisect_right(info_stamps, stamp_ns) - 1
                if i >= 0:
                    K = self._intrinsics(infos[i], image.shape[1], image.shape[0])
                yield SourceFrame(stamp=stamp_ns * 1e-9, image=image, intrinsics=K, frame_id=msg.header.frame_id)
            if skipped > MAX_SKIP_WARNINGS:
                log.warning("%s: skipped %d bad messages on %s in all", self.path, skipped, self.image_topic)
