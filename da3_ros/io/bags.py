"""rosbag2 (sqlite3 or MCAP) reading and writing with `rosbags`, no ROS install needed.

Shared by the image source, the replay and process-bag tools, and tests.

rosbags 0.11 notes (why the helpers look like this):
  * `Reader(path)` takes a bag directory (with metadata.yaml) or a bare
    `.mcap` / `.db3` file and picks the storage itself;
  * `Writer(path, version=..., storage_plugin=...)` creates a NEW directory
    (refuses an existing path). Reader's and Writer's `__enter__` call
    `open()`, which fails when already open, so `open_reader` and
    `open_writer` are context managers that open exactly once;
  * messages are rosbags dataclasses built from a typestore; sensor_msgs,
    std_msgs and builtin_interfaces are identical in Humble and Jazzy, so one
    typestore reads bags from either.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from .images import encode_compressed, encode_image

PathLike = Union[str, os.PathLike]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

STORAGES = ("mcap", "sqlite3")


class BagError(RuntimeError):
    """A bag that cannot be opened, or a request it cannot satisfy."""


# ---------------------------------------------------------------- typestore


def get_typestore(distro: str = "humble"):
    """rosbags typestore for a ROS 2 distro name ("humble", "jazzy", ...)."""
    from rosbags.typesys import Stores, get_typestore as _get

    try:
        store = Stores[f"ROS2_{distro.upper()}"]
    except KeyError:
        known = ", ".join(s.name[5:].lower() for s in Stores if s.name.startswith("ROS2_"))
        raise BagError(f"unknown ROS 2 distro {distro!r}; known: {known}") from None
    return _get(store)


def serialize(typestore, msg) -> bytes:
    """CDR bytes of a rosbags message (its type comes from msg.__msgtype__)."""
    return bytes(typestore.serialize_cdr(msg, msg.__msgtype__))


def deserialize(typestore, rawdata: Union[bytes, memoryview], msgtype: str):
    """rosbags message from CDR bytes."""
    return typestore.deserialize_cdr(rawdata, msgtype)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class BagTopic:
    name: str
    msgtype: str
    message_count: int


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    timestamp_ns: int  # bag receive time (not the header stamp)
    rawdata: bytes


def is_bag_path(path: PathLike) -> bool:
    """True for a rosbag2 directory (metadata.yaml) or a .mcap / .db3 file."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return os.path.isfile(os.path.join(p, "metadata.yaml"))
    return os.path.isfile(p) and p.lower().endswith((".mcap", ".db3"))


@contextmanager
def open_reader(path: PathLike):
    """Open a rosbag2 for reading (storage autodetected): `with open_reader(p) as reader:`.

    Yields an open rosbags Reader and closes it on exit. (Not a plain return:
    rosbags' Reader.__enter__ calls open() again, which fails on an open reader.)
    """
    from rosbags.rosbag2 import Reader

    if not is_bag_path(path):
        raise BagError(f"{os.fspath(path)!r} is not a rosbag2 (a directory with metadata.yaml, or a .mcap/.db3 file)")
    reader = Reader(os.fspath(path))
    try:
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, sqlite3/mcap errors, yaml errors
        raise BagError(f"cannot open bag {os.fspath(path)!r}: {exc}") from exc
    try:
        yield reader
    finally:
        reader.close()


def list_topics(reader) -> List[BagTopic]:
    """Topics of an open reader with their types and message counts, sorted by name."""
    counts: dict = {}
    for conn in reader.connections:
        key = (conn.topic, conn.msgtype)
        counts[key] = counts.get(key, 0) + conn.msgcount
    return [BagTopic(topic, msgtype, n) for (topic, msgtype), n in sorted(counts.items())]


def iter_messages(reader, topics: Optional[Iterable[str]] = None) -> Iterator[BagMessage]:
    """(topic, msgtype, timestamp_ns, rawdata) in bag time order, optionally for some topics only."""
    wanted = None if topics is None else set(topics)
    conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
    if not conns:
        return
    for conn, timestamp, rawdata in reader.messages(connections=conns):
        yield BagMessage(conn.topic, conn.msgtype, int(timestamp), rawdata)


# ---------------------------------------------------------------- writing


@contextmanager
def open_writer(path: PathLike, storage: str = "mcap", version: int = 9):
    """Create a new rosbag2 directory at `path` and yield an open rosbags Writer.

    storage: "mcap" or "sqlite3". version: rosbag2 metadata version (8 or 9;
    9 is what Jazzy writes, Humble reads both). Closed on exit; on an exception
    the bag is aborted like rosbags does. Use `add_topic` and `writer.write(conn,
    timestamp_ns, serialize(typestore, msg))`.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; choose one of {', '.join(STORAGES)}")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        writer = Writer(os.fspath(path), version=version, storage_plugin=plugin)
    except WriterError as exc:
        raise BagError(str(exc)) from exc
    with writer:  # Writer.__enter__ opens, __exit__ closes or aborts
        yield writer


def add_topic(writer, topic: str, msgtype: str, typestore, qos: Sequence[Any] = ()):
    """Register a topic on an open writer -> connection for writer.write().

    qos: rosbags.interfaces.Qos profiles to store as offered_qos_profiles
    (replay uses them, e.g. transient-local for /tf_static); empty = unknown.
    """
    return writer.add_connection(
        topic, msgtype, typestore=typestore, serialization_format="cdr", offered_qos_profiles=list(qos)
    )


# ---------------------------------------------------------------- messages from numpy


def stamp_to_sec(stamp) -> float:
    """builtin_interfaces/Time -> float seconds (~0.2 us resolution at today's epoch)."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_stamp(typestore, t: float):
    """float seconds (>= 0) -> builtin_interfaces/Time, nanoseconds rounded with carry."""
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"stamp must be a finite time >= 0 s, got {t}")
    # split before scaling: t * 1e9 would lose ~100 ns at epoch-sized t; t - floor(t) is exact
    sec = math.floor(t)
    nanosec = int(round((t - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    Time = typestore.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(sec), nanosec=nanosec)


def make_header(typestore, t: float, frame_id: str = "camera"):
    Header = typestore.types["std_msgs/msg/Header"]
    return Header(stamp=make_stamp(typestore, t), frame_id=frame_id)


def image_msg(typestore, array: np.ndarray, encoding: str, t: float, frame_id: str = "camera"):
    """sensor_msgs/Image from an array (see images.encode_image for encodings)."""
    step, data = encode_image(array, encoding)
    Image = typestore.types[IMAGE]
    return Image(
        header=make_header(typestore, t, frame_id),
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=np.frombuffer(data, dtype=np.uint8),
    )


def compressed_image_msg(
    typestore, rgb: np.ndarray, t: float, format: str = "jpeg", quality: int = 90, frame_id: str = "camera"  # noqa: A002
):
    """sensor_msgs/CompressedImage (JPEG or PNG) from HxWx3 uint8 RGB."""
    data = encode_compressed(rgb, format=format, quality=quality)
    CompressedImage = typestore.types[COMPRESSED_IMAGE]
    return CompressedImage(
        header=make_header(typestore, t, frame_id),
        format=format,
        data=np.frombuffer(data, dtype=np.uint8),
    )


def camera_image_topics(image_topics: Sequence[str], cameras: Sequence[str]) -> List[str]:
    """Each rig camera's image topic among `image_topics`: the one with the camera's
    name as a namespace (/rig/<camera>/image_raw). Raises BagError when a camera
    has none or several."""
    chosen = []
    for camera in cameras:
        match = [t for t in image_topics if f"/{camera}/" in f"{t}/"]
        if len(match) != 1:
            raise BagError(f"cannot tell camera {camera!r}'s image topic ({len(match)} candidates among "
                           f"{', '.join(image_topics) or 'no image topics'}); give one image topic per camera, "
                           "in the order of the cameras")
        chosen.append(match[0])
    return chosen


def latched_qos():
    """Transient local, so `da3_ros replay` (and ros2 bag play) serve a topic to late joiners (/tf_static, maps)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def static_transforms(path: PathLike) -> dict:
    """{(parent frame, child frame): T_parent_child (4x4)} from a bag's /tf_static
    (the last one given for each pair)."""
    from ..geometry.transforms import tum_to_c2w

    out = {}
    store = get_typestore()
    with open_reader(path) as reader:
        if "/tf_static" not in {t.name for t in list_topics(reader)}:
            return out
        for m in iter_messages(reader, ["/tf_static"]):
            msg = deserialize(store, m.rawdata, m.msgtype)
            for t in msg.transforms:
                tr, q = t.transform.translation, t.transform.rotation
                row = np.array([[tr.x, tr.y, tr.z, q.x, q.y, q.z, q.w]], np.float64)
                out[(t.header.frame_id, t.child_frame_id)] = tum_to_c2w(row)[0]
    return out


def tf_msg(typestore, t: float, transforms):
    """tf2_msgs/TFMessage (for /tf_static) from [(parent frame, child frame, T_parent_child 4x4)]."""
    from ..geometry.transforms import c2w_to_tum

    T = typestore.types
    out = []
    for parent, child, M in transforms:
        x, y, z, qx, qy, qz, qw = (float(v) for v in c2w_to_tum(np.asarray(M, np.float64))[0])
        out.append(T["geometry_msgs/msg/TransformStamped"](
            header=make_header(typestore, t, parent), child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                                                       rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))))
    return T["tf2_msgs/msg/TFMessage"](transforms=out)


def camera_info_msg(
    typestore,
    K: np.ndarray,
    width: int,
    height: int,
    t: float,
    frame_id: str = "camera",
    D: Optional[Sequence[float]] = None,
    distortion_model: str = "plumb_bob",
):
    """sensor_msgs/CameraInfo for a pinhole camera: K (3x3 pixels), R = I, P = [K | 0]."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.zeros((3, 4))
    P[:, :3] = K
    CameraInfo = typestore.types[CAMERA_INFO]
    ROI = typestore.types["sensor_msgs/msg/RegionOfInterest"]
    return CameraInfo(
        header=make_header(typestore, t, frame_id),
        height=int(height),
        width=int(width),
        distortion_model=distortion_model,
        d=np.asarray(D if D is not None else [0.0] * 5, dtype=np.float64),
        k=K.reshape(9).copy(),
        r=np.eye(3).reshape(9),
        p=P.reshape(12),
        binning_x=0,
        binning_y=0,
        roi=ROI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
