"""ROS messages <-> NumPy, written here because cv_bridge and sensor_msgs_py are
not installable everywhere this package runs.

Pixel work is delegated to `da3_ros.io.images` (pure NumPy, shared with the
offline tools); this module only knows the message layouts. Everything is
vectorised; decoded images are views of the message buffer where possible.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Transform
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from da3_ros.io import images as image_codec
from da3_ros.io.bags import stamp_to_ns, stamp_to_sec  # noqa: F401 - part of this module's API


# ---------------------------------------------------------------- time


# stamp_to_sec / stamp_to_ns: da3_ros.io.bags' (duck-typed: rclpy and rosbags Time alike)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


# ---------------------------------------------------------------- images


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB (a view of msg.data where possible).

    Raises da3_ros.io.images.ImageDecodeError naming what is wrong."""
    return image_codec.decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG/PNG) -> HxWx3 uint8 RGB."""
    return image_codec.decode_compressed(msg.format, msg.data)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """HxW float (32FC1), HxW uint16 (16UC1) or HxWx3 uint8 (rgb8) -> Image."""
    step, data = image_codec.encode_image(array, encoding)
    msg = Image(header=header, height=int(array.shape[0]), width=int(array.shape[1]),
                encoding=encoding, is_bigendian=0, step=step)
    # assigning a bytes object to the array field avoids a per-byte Python loop
    msg.data = data
    return msg


def image_to_depth(msg: Image) -> np.ndarray:
    """32FC1 (metres) or 16UC1 (millimetres) depth -> HxW float32 metres, NaN invalid."""
    return image_codec.decode_depth(msg.encoding, msg.height, msg.width, msg.step, msg.data, msg.is_bigendian)


# ---------------------------------------------------------------- camera info

# reading one (binning, ROI, K or P): da3_ros.io.camera_info, shared with the bag reader


def intrinsics_to_camera_info(K: np.ndarray, width: int, height: int, header: Header) -> CameraInfo:
    """A rectified pinhole CameraInfo (no distortion) for an image of width x height."""
    K = np.asarray(K, dtype=np.float64)
    info = CameraInfo(header=header, width=int(width), height=int(height), distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = K.ravel().tolist()
    info.r = np.eye(3).ravel().tolist()
    P = np.zeros((3, 4))
    P[:, :3] = K
    info.p = P.ravel().tolist()
    return info


# ---------------------------------------------------------------- poses


def matrix_to_pose(T: np.ndarray) -> Pose:
    """4x4 rigid transform -> geometry_msgs/Pose."""
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (
        float(x), float(y), float(z), float(w))
    return pose


def matrix_to_transform(T: np.ndarray) -> Transform:
    """4x4 rigid transform -> geometry_msgs/Transform."""
    pose = matrix_to_pose(T)
    tf = Transform()
    tf.translation.x, tf.translation.y, tf.translation.z = pose.position.x, pose.position.y, pose.position.z
    tf.rotation = pose.orientation
    return tf


def _quat_xyzw_to_matrix(q, t) -> np.ndarray:
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"invalid quaternion ({q.x}, {q.y}, {q.z}, {q.w})")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T[:3, 3] = t
    return T


def pose_to_matrix(pose: Pose) -> np.ndarray:
    p = pose.position
    return _quat_xyzw_to_matrix(pose.orientation, [p.x, p.y, p.z])


def transform_to_matrix(tf: Transform) -> np.ndarray:
    t = tf.translation
    return _quat_xyzw_to_matrix(tf.rotation, [t.x, t.y, t.z])


# ---------------------------------------------------------------- point clouds

_XYZRGB_FIELDS = [
    PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
    PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
    PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    # PCL / RViz convention: 0x00RRGGBB packed into the bytes of a float32
    PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
]
_XYZRGB_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb"], "formats": ["<f4", "<f4", "<f4", "<u4"],
                          "offsets": [0, 4, 8, 12], "itemsize": 16})


def points_to_cloud(xyz: np.ndarray, rgb: Optional[np.ndarray], header: Header) -> PointCloud2:
    """(N,3) float points (metres) and (N,3) uint8 colours -> an unordered
    XYZRGB PointCloud2 (height 1, little-endian, dense: no NaN points)."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    n = len(xyz)
    packed = np.empty(n, dtype=_XYZRGB_DTYPE)
    packed["x"], packed["y"], packed["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is None:
        packed["rgb"] = 0xFFFFFF
    else:
        c = np.asarray(rgb, dtype=np.uint32).reshape(-1, 3)
        packed["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    msg = PointCloud2(header=header, height=1, width=n, fields=list(_XYZRGB_FIELDS), is_bigendian=False,
                      point_step=_XYZRGB_DTYPE.itemsize, row_step=_XYZRGB_DTYPE.itemsize * n, is_dense=True)
    msg.data = packed.tobytes()
    return msg


def cloud_to_points(msg: PointCloud2) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read x, y, z (and rgb when present) back from a PointCloud2 of float32 fields."""
    offsets = {f.name: f.offset for f in msg.fields}
    missing = {"x", "y", "z"} - set(offsets)
    if missing:
        raise ValueError(f"PointCloud2 lacks fields {sorted(missing)}")
    names = [n for n in ("x", "y", "z", "rgb") if n in offsets]
    dtype = np.dtype({"names": names,
                      "formats": ["<u4" if n == "rgb" else "<f4" for n in names],
                      "offsets": [offsets[n] for n in names], "itemsize": msg.point_step})
    arr = np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)
    xyz = np.stack([arr["x"], arr["y"], arr["z"]], axis=1)
    rgb = None
    if "rgb" in names:
        packed = arr["rgb"]
        rgb = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=1).astype(np.uint8)
    return xyz, rgb
