"""A camera on one side and a recorder on the other, around a da3_node under test.

The camera publishes synthetic frames the way a driver does (best-effort
images, CameraInfo beside them); the recorder subscribes to every output and
keeps what arrives, keyed by the source stamp. Real rclpy, real DDS.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Callable, Dict, List, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from nav_msgs.msg import Odometry, Path
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from da3_ros.io.images import encode_compressed
from da3_ros.msg import Keyframe
from da3_ros.ros.conversions import array_to_image, intrinsics_to_camera_info, ns_to_stamp, stamp_to_ns
from da3_ros.ros.node import Da3Node

OPTICAL_FRAME = "test_camera_optical_frame"

OUTPUT_TYPES = {
    "depth/image": Image,
    "depth/camera_info": CameraInfo,
    "depth/confidence": Image,
    "points": PointCloud2,
    "odometry": Odometry,
    "path": Path,
    "camera_info/estimated": CameraInfo,
    "keyframe": Keyframe,
    "/tf": TFMessage,
    "/diagnostics": DiagnosticArray,
}


def spin_until(nodes, predicate: Callable[[], bool], timeout: float, context: Context) -> bool:
    """Spin `nodes` until `predicate()` holds or `timeout` seconds pass."""
    executor = SingleThreadedExecutor(context=context)
    for node in nodes if isinstance(nodes, (list, tuple)) else [nodes]:
        executor.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if predicate():
                return True
            executor.spin_once(timeout_sec=0.05)
        return predicate()
    finally:
        executor.shutdown()


def stamp_ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


class Camera:
    """Publishes frames of a synthetic sequence (or anything else) as a driver would."""

    def __init__(self, node: Node, namespace: str = "", compressed: bool = False):
        prefix = f"{namespace}/" if namespace else ""
        self.node = node
        self.image_pub = node.create_publisher(
            CompressedImage if compressed else Image, prefix + ("image/compressed" if compressed else "image"),
            qos_profile_sensor_data)
        self.info_pub = node.create_publisher(CameraInfo, prefix + "camera_info", qos_profile_sensor_data)

    def publish_rgb(self, rgb: np.ndarray, seconds: float, K: Optional[np.ndarray] = None, fmt: str = "") -> int:
        ns = stamp_ns(seconds)
        header = Image().header
        header.stamp, header.frame_id = ns_to_stamp(ns), OPTICAL_FRAME
        if K is not None:
            self.info_pub.publish(intrinsics_to_camera_info(K, rgb.shape[1], rgb.shape[0], header))
        if fmt:
            self.image_pub.publish(CompressedImage(header=header, format=fmt, data=encode_compressed(rgb, fmt)))
        else:
            self.image_pub.publish(array_to_image(np.ascontiguousarray(rgb), "rgb8", header))
        return ns

    def publish(self, msg) -> None:
        self.image_pub.publish(msg)


class Recorder:
    """Subscribes to every output of a da3_node; messages by topic and stamp (ns)."""

    def __init__(self, node: Node, namespace: str = ""):
        self.by_topic: Dict[str, List] = defaultdict(list)
        prefix = f"{namespace}/" if namespace else ""
        for topic, msg_type in OUTPUT_TYPES.items():
            name = topic if topic.startswith("/") else prefix + topic
            node.create_subscription(msg_type, name, lambda m, t=topic: self.by_topic[t].append(m), 50)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(PointCloud2, prefix + "map/points",
                                 lambda m: self.by_topic["map/points"].append(m), latched)

    def stamps(self, topic: str) -> List[int]:
        msgs = self.by_topic.get(topic, [])
        if topic == "/tf":
            return [stamp_to_ns(t.header.stamp) for m in msgs for t in m.transforms]
        return [stamp_to_ns(m.header.stamp) for m in msgs]

    def at(self, topic: str, ns: int):
        for m in self.by_topic.get(topic, []):
            if topic == "/tf":
                for t in m.transforms:
                    if stamp_to_ns(t.header.stamp) == ns:
                        return t
            elif stamp_to_ns(m.header.stamp) == ns:
                return m
        return None


class Spinner:
    """Spins the given nodes in a background executor (da3_node's own kind) while a test runs."""

    def __init__(self, context, *nodes):
        import threading

        from da3_ros.ros.node import node_executor, spin_until_shutdown

        self.executor = node_executor(context)
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=spin_until_shutdown, args=(self.executor,), daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def shutdown(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


class Lifecycle:
    """Client of a node's lifecycle services."""

    def __init__(self, node, spinner, target: str = "/da3_node"):
        self.spinner = spinner
        self.change = node.create_client(ChangeState, f"{target}/change_state")
        self.get = node.create_client(GetState, f"{target}/get_state")
        assert self.change.wait_for_service(timeout_sec=10.0) and self.get.wait_for_service(timeout_sec=10.0)

    def _call(self, client, request):
        future = client.call_async(request)
        assert self.spinner.wait_for(future.done, 60.0), "lifecycle service did not answer"
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id


def start_node(context, model, **params):
    overrides = [Parameter(k, value=v) for k, v in {
        "window_size": 4, "stride": 1, "min_confidence": 0.0, "min_depth": 0.01, "max_depth": 100.0,
        "point_decimation": 2, "map_publish_period": 0.2, "path_publish_period": 0.2, "diagnostics_period": 0.2,
        **params}.items()]
    return Da3Node(model=model, context=context, parameter_overrides=overrides)


def header(seconds: float):
    from std_msgs.msg import Header

    return Header(stamp=ns_to_stamp(stamp_ns(seconds)), frame_id=OPTICAL_FRAME)


def feed(camera, recorder, spinner, rgb, seconds, K=None, fmt="", timeout=10.0) -> bool:
    """Publish one frame (re-sending while unanswered: best effort may drop it) and
    wait for its depth image and odometry (separate topics: either may come first)."""
    ns = camera.publish_rgb(rgb, seconds, K, fmt)
    for _ in range(int(timeout / 0.5)):
        if spinner.wait_for(lambda: ns in recorder.stamps("depth/image") and ns in recorder.stamps("odometry"), 0.5):
            return True
        camera.publish_rgb(rgb, seconds, K, fmt)
    return False


def publish_info(camera, spinner, node, info) -> None:
    """Publish a CameraInfo until the node holds it (best effort may drop it)."""
    for _ in range(20):
        camera.info_pub.publish(info)
        if spinner.wait_for(lambda: node.pipeline.camera_info == info, 0.25):
            return
    raise AssertionError("the node never received the CameraInfo")


def read_output(path):
    """{topic: [(bag timestamp ns, rclpy message)]} of a bag, and its msgtypes by topic."""
    from rclpy.serialization import deserialize_message

    from da3_ros.io import bags
    from da3_ros.ros.replay import message_class

    by_topic, types = {}, {}
    with bags.open_reader(path) as reader:
        for topic in bags.list_topics(reader):
            types[topic.name] = topic.msgtype
        for m in bags.iter_messages(reader):
            msg = deserialize_message(bytes(m.rawdata), message_class(m.msgtype))
            by_topic.setdefault(m.topic, []).append((m.timestamp_ns, msg))
    return by_topic, types
