"""Stream results -> the node's output messages.

One builder serves the live node and `da3_ros process-bag`, so a bag written
offline holds exactly what the node would have published.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from da3_ros.geometry.transforms import inv_se3
from da3_ros.msg import Keyframe
from da3_ros.ros.conversions import (array_to_image, intrinsics_to_camera_info, matrix_to_pose,
                                     matrix_to_transform, points_to_cloud)


@dataclass
class OutputOptions:
    world_frame: str = "odom"
    base_frame: str = ""  # empty: poses are of the optical frame itself
    min_depth: float = 0.1
    max_depth: float = 20.0
    min_confidence: float = 1.5
    point_decimation: int = 4
    path_max_length: int = 10_000
    publish_depth: bool = True
    publish_confidence: bool = True
    publish_points: bool = True
    publish_odometry: bool = True
    publish_keyframes: bool = True
    publish_tf: bool = True


@dataclass
class FrameOutputs:
    """Everything published for one answered frame (None: switched off)."""

    depth: Optional[Image] = None
    depth_info: Optional[CameraInfo] = None
    confidence: Optional[Image] = None
    points: Optional[PointCloud2] = None
    odometry: Optional[Odometry] = None
    path: Optional[Path] = None
    tf: Optional[TFMessage] = None
    estimated_info: Optional[CameraInfo] = None
    keyframe: Optional[Keyframe] = None

    def items(self):
        """(output name, message) for every message that was built."""
        return [(name, msg) for name, msg in self.__dict__.items() if msg is not None]


@dataclass
class OutputBuilder:
    """Builds FrameOutputs; owns the published path (bounded) and keyframe count."""

    options: OutputOptions
    path_poses: deque = field(default_factory=deque)
    keyframe_count: int = 0
    reset_count: int = 0

    def reset(self) -> None:
        self.path_poses.clear()
        self.keyframe_count = 0
        self.reset_count += 1

    def build(
        self,
        result,
        stamp: Time,
        optical_frame: str,
        T_world_optical: np.ndarray,
        T_base_optical: Optional[np.ndarray],
    ) -> FrameOutputs:
        """Messages for one StreamResult. Depth, confidence and intrinsics are at
        the input image's resolution; every header carries the image's stamp."""
        o = self.options
        out = FrameOutputs()
        h, w = result.depth.shape
        optical = Header(stamp=stamp, frame_id=optical_frame)
        world = Header(stamp=stamp, frame_id=o.world_frame)
        depth_range = (o.min_depth, o.max_depth)
        valid = result.valid_mask(o.min_confidence, depth_range)
        # REP 118: NaN where invalid
        depth = np.where(valid, result.depth, np.float32(np.nan)).astype(np.float32, copy=False)
        confidence = result.confidence.astype(np.float32, copy=False)
        info = intrinsics_to_camera_info(result.intrinsics, w, h, optical)

        if o.publish_depth:
            out.depth = array_to_image(depth, "32FC1", optical)
            out.depth_info = info
        if o.publish_confidence:
            out.confidence = array_to_image(confidence, "32FC1", optical)
        if o.publish_points:
            xyz, rgb = result.point_cloud("optical", o.min_confidence, depth_range, max(1, o.point_decimation))
            out.points = points_to_cloud(xyz, rgb, optical)
        if result.intrinsics_source != "camera_info":
            out.estimated_info = info

        # the pose of the published child frame: the base if configured, else the optical frame
        if o.base_frame and T_base_optical is not None:
            child, T_world_child = o.base_frame, T_world_optical @ inv_se3(T_base_optical)
        else:
            child, T_world_child = optical_frame, T_world_optical
        if o.publish_tf:
            out.tf = TFMessage(transforms=[TransformStamped(
                header=world, child_frame_id=child, transform=matrix_to_transform(T_world_child))])
        if o.publish_odometry:
            odom = Odometry(header=world, child_frame_id=child)
            odom.pose.pose = matrix_to_pose(T_world_child)
            # DA3 gives no calibrated uncertainty: covariance stays zero ("not
            # provided"); SLAM back-ends apply their own noise model
            out.odometry = odom
            self.path_poses.append(PoseStamped(header=world, pose=odom.pose.pose))
            while len(self.path_poses) > o.path_max_length:
                self.path_poses.popleft()
            out.path = Path(header=world, poses=list(self.path_poses))
        if result.keyframe and o.publish_keyframes:
            kf = Keyframe(header=optical, keyframe_id=self.keyframe_count, reset_count=self.reset_count,
                          world_frame_id=o.world_frame, metric_scale=bool(result.metric),
                          image=array_to_image(np.ascontiguousarray(result.image), "rgb8", optical),
                          depth=out.depth or array_to_image(depth, "32FC1", optical),
                          confidence=out.confidence or array_to_image(confidence, "32FC1", optical),
                          camera_info=info)
            kf.pose.pose = matrix_to_pose(T_world_optical)
            out.keyframe = kf
            self.keyframe_count += 1
        return out


def map_cloud(xyz: np.ndarray, rgb: Optional[np.ndarray], T_world_stream: np.ndarray, stamp: Time,
              world_frame: str) -> PointCloud2:
    """World map points (streaming core's world) -> PointCloud2 in the published world frame."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    xyz_world = xyz @ T_world_stream[:3, :3].T + T_world_stream[:3, 3]
    return points_to_cloud(xyz_world, rgb, Header(stamp=stamp, frame_id=world_frame))


# FrameOutputs field -> topic (relative names, so namespaces and remaps work)
OUTPUT_TOPICS = {
    "depth": "depth/image",
    "depth_info": "depth/camera_info",
    "confidence": "depth/confidence",
    "points": "points",
    "odometry": "odometry",
    "path": "path",
    "tf": "/tf",
    "estimated_info": "camera_info/estimated",
    "keyframe": "keyframe",
}
