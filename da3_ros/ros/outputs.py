"""Every output of da3_node, declared once.

`OUTPUTS` says, per output: its topic (relative, so namespaces and remaps
work), message type, QoS, the parameter that switches it, whether it is built
only while someone subscribes (the depth_image_proc habit), and how it is built
from an answered frame. The node makes its publishers and switches from it,
process-bag its topics, and the README's topic table is checked against it
(`python -m da3_ros.ros.outputs` prints the rows).

One builder serves the live node and process-bag, so a bag written offline
holds exactly what the node would have published.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from da3_ros.geometry.transforms import inv_se3
from da3_ros.msg import Keyframe
from da3_ros.ros.conversions import (array_to_image, intrinsics_to_camera_info, matrix_to_pose,
                                     matrix_to_transform, points_to_cloud, stamp_to_sec)
from da3_ros.stream.result import StreamResult
from da3_ros.stream.trajectory import Trajectory

# outputs: reliable (RViz, rosbag and SLAM back-ends all subscribe reliable or
# best effort). Images and clouds: shallow, so a slow subscriber never builds a
# backlog (it gets the newest). Poses are small and a consumer integrating them
# wants each one: as deep as /tf (tf2's own 100). Keyframes are few and a SLAM
# back-end needs every one: deep enough to ride out a busy second.
OUTPUT_QOS = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
POSE_QOS = TF_QOS
KEYFRAME_QOS = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class OutputOptions:
    """What the builder needs from the node's parameters (ros.params.output_options)."""

    world_frame: str = "odom"
    base_frame: str = ""  # empty: poses are of the optical frame itself
    point_decimation: int = 4
    path_max_length: int = 10_000
    #: switch parameter (publish_*) -> on
    switches: Dict[str, bool] = field(default_factory=dict)


@dataclass
class FrameSource:
    """What the caller knows of the frame a result answers (StreamResult.meta)."""

    stamp: Time  # the image header's stamp
    optical_frame: str
    T_base_optical: Optional[np.ndarray]  # from /tf_static, with base_frame
    received: float = 0.0  # the caller's clock at arrival, for latency
    camera: str = ""  # the rig camera ("" for a single camera): its outputs go under <camera>/
    #: this view carries the rig's pose (odometry, path, TF): the first camera of its rig frame
    primary: bool = True
    #: with a rig and no calibrated extrinsics: (optical frame, T_primary_optical) of the
    #: other cameras as estimated from the model's poses, published on TF
    estimated_extrinsics: Tuple[Tuple[str, np.ndarray], ...] = ()
    #: the frame's way through the live node, by stage: time.monotonic() when it was
    #: taken, decoded, answered, its messages built and published (the node's timing)
    marks: Dict[str, float] = field(default_factory=dict)


class FrameContext:
    """One answered frame on its way to messages: the pieces several outputs
    share are computed once, on first use, and only if an output asks."""

    def __init__(self, result: StreamResult, source: FrameSource, options: OutputOptions, keyframe_id: int):
        self.result, self.source, self.options = result, source, options
        self.keyframe_id = keyframe_id
        self.optical_header = Header(stamp=source.stamp, frame_id=source.optical_frame)
        self.world_header = Header(stamp=source.stamp, frame_id=options.world_frame)

    @cached_property
    def valid(self) -> np.ndarray:
        return self.result.valid_mask()

    @cached_property
    def depth_image(self) -> Image:
        # REP 118: NaN where invalid
        depth = np.where(self.valid, self.result.depth, np.float32(np.nan)).astype(np.float32, copy=False)
        return array_to_image(depth, "32FC1", self.optical_header)

    @cached_property
    def confidence_image(self) -> Image:
        return array_to_image(self.result.confidence.astype(np.float32, copy=False), "32FC1", self.optical_header)

    @cached_property
    def camera_info(self) -> CameraInfo:
        r = self.result
        return intrinsics_to_camera_info(r.intrinsics, r.width, r.height, self.optical_header)

    @cached_property
    def child(self) -> Tuple[str, np.ndarray]:
        """(child frame id, T_world_child): the base if configured, else the optical frame."""
        T_world_optical, src = self.result.T_world_optical, self.source
        if self.options.base_frame and src.T_base_optical is not None:
            return self.options.base_frame, T_world_optical @ inv_se3(src.T_base_optical)
        return src.optical_frame, T_world_optical

    @cached_property
    def pose(self):
        return matrix_to_pose(self.child[1])


def _points(c: FrameContext) -> PointCloud2:
    xyz, rgb = c.result.point_cloud("optical", stride=max(1, c.options.point_decimation))
    return points_to_cloud(xyz, rgb, c.optical_header)


def _tf(c: FrameContext) -> TFMessage:
    child, T = c.child
    transforms = [TransformStamped(header=c.world_header, child_frame_id=child, transform=matrix_to_transform(T))]
    transforms += [TransformStamped(header=c.optical_header, child_frame_id=frame, transform=matrix_to_transform(T_rel))
                   for frame, T_rel in c.source.estimated_extrinsics]
    return TFMessage(transforms=transforms)


def _odometry(c: FrameContext) -> Odometry:
    odom = Odometry(header=c.world_header, child_frame_id=c.child[0])
    # DA3 gives no calibrated uncertainty: covariance stays zero ("not provided");
    # SLAM back-ends apply their own noise model
    odom.pose.pose = c.pose
    return odom


def _keyframe(c: FrameContext) -> Optional[Keyframe]:
    r = c.result
    if not r.keyframe:
        return None
    kf = Keyframe(header=c.optical_header, keyframe_id=c.keyframe_id, reset_count=r.epoch,
                  world_frame_id=c.options.world_frame, metric_scale=bool(r.metric),
                  image=array_to_image(np.ascontiguousarray(r.image), "rgb8", c.optical_header),
                  depth=c.depth_image, confidence=c.confidence_image, camera_info=c.camera_info)
    kf.pose.pose = matrix_to_pose(r.T_world_optical)
    return kf


@dataclass(frozen=True)
class Output:
    name: str
    topic: str  # relative unless it starts with /
    msg_type: type
    qos: QoSProfile
    switch: Optional[str]  # the bool parameter that turns it on; None: always on
    lazy: bool  # built only while someone subscribes
    description: str
    #: message for one answered frame (None: nothing this frame); None for outputs
    #: not published per frame (map/points: a timer)
    build: Optional[Callable[[FrameContext], Optional[object]]]
    #: one per camera of a rig (under <camera>/), built from each view; else one for
    #: the rig, built from its primary view
    per_camera: bool = False

    def topic_for(self, camera: str) -> str:
        return f"{camera}/{self.topic}" if camera and self.per_camera else self.topic


OUTPUTS: Tuple[Output, ...] = (
    Output("depth", "depth/image", Image, OUTPUT_QOS, "publish_depth", True,
           "z-depth 32FC1 at the input image's size, in metres (metric models, external odometry) or the first "
           "window's unit; NaN invalid (REP 118)", lambda c: c.depth_image, per_camera=True),
    Output("depth_info", "depth/camera_info", CameraInfo, OUTPUT_QOS, "publish_depth", True,
           "same size, K, frame and stamp as `depth/image`", lambda c: c.camera_info, per_camera=True),
    Output("confidence", "depth/confidence", Image, OUTPUT_QOS, "publish_confidence", True,
           "DA3 confidence 32FC1 (>= 1, larger is better)", lambda c: c.confidence_image, per_camera=True),
    Output("points", "points", PointCloud2, OUTPUT_QOS, "publish_points", True,
           "x, y, z, rgb in the optical frame (every `point_decimation`-th pixel)", _points, per_camera=True),
    Output("odometry", "odometry", Odometry, POSE_QOS, "publish_odometry", True,
           "pose of the optical frame (or `base_frame`) in `world_frame`", _odometry),
    Output("path", "path", Path, OUTPUT_QOS, "publish_odometry", True,
           "the answered poses in `world_frame` (the last `path_max_length`); every `path_publish_period` while "
           "it grows, stamped with its newest pose", None),
    Output("tf", "/tf", TFMessage, TF_QOS, "publish_tf", False,
           "`world_frame` -> optical frame, or -> `base_frame` via the fixed base -> camera transform from "
           "/tf_static", _tf),
    Output("estimated_info", "camera_info/estimated", CameraInfo, OUTPUT_QOS, None, True,
           "intrinsics estimated from DA3's rays (only while no usable CameraInfo)",
           lambda c: c.camera_info if c.result.intrinsics_source != "camera_info" else None, per_camera=True),
    Output("keyframe", "keyframe", Keyframe, KEYFRAME_QOS, "publish_keyframes", True,
           "image, depth, confidence, pose and intrinsics of each keyframe, for SLAM back-ends", _keyframe, per_camera=True),
    Output("map", "map/points", PointCloud2, LATCHED_QOS, "publish_map", True,
           "world map in `world_frame`, voxel-downsampled, capped; every `map_publish_period`; built from the "
           "keyframes answered while it has a subscriber", None),
)
OUTPUTS_BY_NAME: Dict[str, Output] = {o.name: o for o in OUTPUTS}
#: the per-frame outputs in the order they are built and published: what a robot
#: waits on first (depth, its camera_info, the pose on TF and odometry), the
#: heavier messages after
PUBLISH_ORDER = ("depth", "depth_info", "tf", "odometry", "estimated_info", "confidence", "points", "keyframe")
PER_FRAME: Tuple[Output, ...] = tuple(OUTPUTS_BY_NAME[name] for name in PUBLISH_ORDER)
assert set(PUBLISH_ORDER) == {o.name for o in OUTPUTS if o.build is not None}, "PUBLISH_ORDER names every per-frame output"


def switched_on(options: OutputOptions) -> FrozenSet[str]:
    """Names of the outputs whose switch is on."""
    return frozenset(o.name for o in OUTPUTS if o.switch is None or options.switches[o.switch])


@dataclass
class OutputBuilder:
    """Messages for answered frames; keeps the path's poses (bounded) and the
    keyframe count, whether or not anyone subscribes, so a late subscriber gets
    it all. The path's poses are the world's trajectory: when the world's unit
    changes (a rig's metric scale), they are read again from `trajectory`
    (the world's one trajectory, published world frame).

    The path is not a per-frame message: its size grows with the run (25 ms to
    publish 10,000 poses), so `path_message` hands it out when asked (the node's
    timer, process-bag every period of bag time), from any thread."""

    options: OutputOptions
    trajectory: Optional[Callable[[], Trajectory]] = None
    path_poses: deque = field(default_factory=deque)
    keyframe_count: int = 0
    epoch: int = 0
    _path_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _path_changed: bool = False

    def build(self, result: StreamResult, wanted: FrozenSet[str]) -> List[Tuple[Output, object]]:
        """(output, message) for the `wanted` per-frame outputs of one result."""
        return list(self.messages(result, wanted))

    def messages(self, result: StreamResult, wanted: FrozenSet[str]) -> Iterator[Tuple[Output, object]]:
        """(output, message) for the `wanted` per-frame outputs of one result, each
        built when asked for (in PUBLISH_ORDER: the node publishes each before the
        next is built). Depth, confidence and intrinsics are at the input image's
        size; every header carries the image's stamp."""
        o, source = self.options, result.meta
        if result.epoch != self.epoch:  # the world was reset: a new path and keyframe count
            self.epoch = result.epoch
            self.keyframe_count = 0
            with self._path_lock:
                self.path_poses.clear()
        c = FrameContext(result, source, o, self.keyframe_count)
        with self._path_lock:
            if result.world_rescaled != 1.0 and self.trajectory is not None:  # the world became metric: the path too
                self._reread_path(source)
            if source.primary:  # the rig's path: one pose per rig frame
                self.path_poses.append(PoseStamped(header=c.world_header, pose=c.pose))
                while len(self.path_poses) > o.path_max_length:
                    self.path_poses.popleft()
                self._path_changed = True
        if result.keyframe:
            self.keyframe_count += 1
        for output in PER_FRAME:
            if output.name in wanted and (output.per_camera or source.primary):
                msg = output.build(c)
                if msg is not None:
                    yield output, msg

    def path_message(self) -> Optional[Path]:
        """The path (world frame, stamped with its newest pose) when it changed
        since the last call, else None."""
        with self._path_lock:
            if not self._path_changed or not self.path_poses:
                return None
            self._path_changed = False
            poses = list(self.path_poses)
        return Path(header=Header(stamp=poses[-1].header.stamp, frame_id=self.options.world_frame), poses=poses)

    def _reread_path(self, source: FrameSource) -> None:
        """The path's poses from the world's trajectory (matched by stamp; the
        world may be a result or two ahead of this thread)."""
        traj = self.trajectory()
        by_stamp = dict(zip(traj.stamps.tolist(), traj.c2w))
        T_optical_base = None
        if self.options.base_frame and source.T_base_optical is not None:
            T_optical_base = inv_se3(source.T_base_optical)
        for pose in self.path_poses:
            T = by_stamp.get(stamp_to_sec(pose.header.stamp))
            if T is not None:
                pose.pose = matrix_to_pose(T if T_optical_base is None else T @ T_optical_base)


def map_cloud(xyz_world: np.ndarray, rgb: Optional[np.ndarray], stamp: Time, world_frame: str) -> PointCloud2:
    """World map points (published world, see Streamer.map_points("world")) -> PointCloud2."""
    return points_to_cloud(xyz_world, rgb, Header(stamp=stamp, frame_id=world_frame))


def _type_name(msg_type: type) -> str:
    module = msg_type.__module__.split(".")[0]
    return f"{module}/{msg_type.__name__}"


def readme_rows() -> List[str]:
    """The README topic table's output rows, as this table declares them."""
    rows = []
    for o in OUTPUTS:
        switch = f"`{o.switch}`" if o.switch else "-"
        rig = f" With `cameras`: `<camera>/{o.topic}`, one per camera." if o.per_camera else ""
        rows.append(f"| `{o.topic}` | {_type_name(o.msg_type)} | {switch} | {_qos_name(o.qos)} | {o.description}.{rig} |")
    return rows


def _qos_name(qos: QoSProfile) -> str:
    latched = ", transient local" if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL else ""
    return f"{qos.reliability.name.lower().replace('_', ' ')}, keep last {qos.depth}{latched}"


if __name__ == "__main__":
    print("\n".join(readme_rows()))
