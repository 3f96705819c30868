"""One deterministic, non-trivial sample of every message type the node uses.

The DDS round-trip test publishes these from one process and compares what a
second process receives field by field against a fresh copy built here.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from da3_ros.msg import Keyframe

STAMP = Time(sec=1_700_000_000, nanosec=123_456_789)
OPTICAL_FRAME = "camera_color_optical_frame"
WIDTH, HEIGHT = 8, 6


def header(frame_id: str = OPTICAL_FRAME) -> Header:
    return Header(stamp=STAMP, frame_id=frame_id)


def image() -> Image:
    pixels = (np.arange(HEIGHT * WIDTH * 3) % 251).astype(np.uint8)
    return Image(header=header(), height=HEIGHT, width=WIDTH, encoding="rgb8",
                 is_bigendian=0, step=WIDTH * 3, data=pixels.tobytes())


def depth_image() -> Image:
    depth = np.linspace(0.5, 4.0, HEIGHT * WIDTH, dtype=np.float32)
    depth[3] = np.nan  # REP 118: invalid
    return Image(header=header(), height=HEIGHT, width=WIDTH, encoding="32FC1",
                 is_bigendian=0, step=WIDTH * 4, data=depth.tobytes())


def compressed_image() -> CompressedImage:
    # A valid 1x1 PNG is not needed for transport; bytes are bytes.
    return CompressedImage(header=header(), format="jpeg", data=bytes(range(256)) * 3)


def camera_info() -> CameraInfo:
    info = CameraInfo(header=header(), height=HEIGHT, width=WIDTH, distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [5.0, 0.0, 4.0, 0.0, 5.0, 3.0, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [5.0, 0.0, 4.0, 0.0, 0.0, 5.0, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def point_cloud() -> PointCloud2:
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
    xyz = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    return PointCloud2(header=header(), height=1, width=5, fields=fields, is_bigendian=False,
                       point_step=16, row_step=80, data=xyz.tobytes(), is_dense=True)


def pose() -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = 1.0, -2.0, 0.5
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = 0.0, 0.0, 0.6, 0.8
    return p


def odometry() -> Odometry:
    odom = Odometry(header=header("odom"), child_frame_id=OPTICAL_FRAME)
    odom.pose.pose = pose()
    odom.pose.covariance = [float(i) for i in range(36)]
    return odom


def path() -> Path:
    return Path(header=header("odom"), poses=[PoseStamped(header=header("odom"), pose=pose())] * 3)


def transform(child: str = OPTICAL_FRAME, parent: str = "odom") -> TransformStamped:
    t = TransformStamped(header=header(parent), child_frame_id=child)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = 0.1, 0.2, 0.3
    t.transform.rotation.w = 1.0
    return t


def tf() -> TFMessage:
    return TFMessage(transforms=[transform()])


def tf_static() -> TFMessage:
    return TFMessage(transforms=[transform(OPTICAL_FRAME, "camera_link")])


def diagnostics() -> DiagnosticArray:
    status = DiagnosticStatus(level=DiagnosticStatus.OK, name="da3_node: pipeline",
                              message="ok", hardware_id="cpu",
                              values=[KeyValue(key="rate_hz", value="30.0")])
    return DiagnosticArray(header=header(""), status=[status])


def keyframe() -> Keyframe:
    kf = Keyframe(header=header(), keyframe_id=42, reset_count=1, world_frame_id="odom",
                  metric_scale=True, image=image(), depth=depth_image(),
                  confidence=depth_image(), camera_info=camera_info())
    kf.pose.pose = pose()
    return kf


# topic -> (message type, sample factory, transient-local?)
SAMPLES = {
    "sample/image": (Image, image, False),
    "sample/image/compressed": (CompressedImage, compressed_image, False),
    "sample/camera_info": (CameraInfo, camera_info, False),
    "sample/points": (PointCloud2, point_cloud, False),
    "sample/odometry": (Odometry, odometry, False),
    "sample/path": (Path, path, False),
    "/tf": (TFMessage, tf, False),
    "/tf_static": (TFMessage, tf_static, True),
    "/diagnostics": (DiagnosticArray, diagnostics, False),
    "sample/keyframe": (Keyframe, keyframe, False),
}
BEST_EFFORT_TOPIC = "sample/best_effort_image"
