"""da3_node: live depth, point clouds and camera poses from a camera stream.

Data flow: image callback -> one-slot buffer (newest frame wins, the rest are
counted as dropped) -> worker thread: decode, Frame, streaming core (window,
network, world frame) -> StreamResult -> messages. Callbacks only store; all
inference happens on the worker, so the executor is never blocked by it.
"""

from __future__ import annotations

import os
import pathlib
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry, Path
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from da3_ros.io.writers import write_ply, write_tum
from da3_ros.msg import Keyframe
from da3_ros.ros.conversions import pose_to_matrix, stamp_to_sec
from da3_ros.ros.frames import OdometryHistory, StaticTransforms
from da3_ros.ros.messages import OUTPUT_TOPICS
from da3_ros.ros.params import NodeConfig, declare_parameters
from da3_ros.ros.pipeline import FramePipeline, load_window_model
from da3_ros.stream.interface import WindowModel

# outputs: reliable (RViz, rosbag and SLAM back-ends all subscribe reliable or
# best effort), shallow so a slow subscriber never builds a backlog
OUTPUT_QOS = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
TF_QOS = QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
THROTTLE_S = 5.0


@dataclass
class _Input:
    msg: Any
    compressed: bool
    received: float  # time.monotonic() at the callback, for latency


class LatestSlot:
    """A one-slot buffer: put() replaces what the worker has not taken yet."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: Optional[_Input] = None
        self.dropped = 0

    def put(self, item: _Input) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float) -> Optional[_Input]:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None


class Stats:
    """Counters and rates for /diagnostics (written by the worker, read by a timer)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = 0
        self.answered = 0
        self.bad_inputs = 0
        self.latencies_ms: list = []
        self.last_error = ""
        self.window_fill = 0
        self._last = (time.monotonic(), 0, 0)

    def rates(self):
        now = time.monotonic()
        with self.lock:
            t0, rx0, ans0 = self._last
            dt = max(now - t0, 1e-6)
            out = ((self.received - rx0) / dt, (self.answered - ans0) / dt, list(self.latencies_ms))
            self._last = (now, self.received, self.answered)
            self.latencies_ms.clear()
        return out


class Da3Node(Node):
    """ROS 2 node around the streaming core. `model` injects a WindowModel
    (tests, the demo); otherwise the `model` parameter is loaded."""

    def __init__(self, model: Optional[WindowModel] = None, **kwargs):
        super().__init__("da3_node", **kwargs)
        self.cfg: NodeConfig = declare_parameters(self)
        self.model = model if model is not None else self._load_model()
        self.get_logger().info(f"model ready: {self.model.name}")

        self.static_tf = StaticTransforms(self)
        self.stats = Stats()
        self.slot = LatestSlot()
        self.pipeline = FramePipeline(self.model, self.cfg, self._warn_bad, self.static_tf.lookup, OdometryHistory(),
                                      notice=self.get_logger().warning)
        if self.cfg.external_odometry_topic and self.cfg.publish_tf:
            self.get_logger().warning(
                "external odometry and publish_tf are both on: if the odometry source already publishes "
                f"{self.cfg.world_frame} -> {self.cfg.base_frame or 'its base'}, set publish_tf:=false "
                "(a TF frame has one parent)")
        self._pipeline_lock = threading.Lock()  # the worker and the services take turns
        if self.cfg.warmup_width and self.cfg.warmup_height:
            seconds = self.pipeline.warmup(self.cfg.warmup_width, self.cfg.warmup_height)
            self.get_logger().info(f"network warmed up for {self.cfg.warmup_width}x{self.cfg.warmup_height} "
                                   f"images in {seconds:.1f} s")

        self._create_publishers()
        self._create_subscriptions()
        service_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=service_group)
        self.create_service(Trigger, "~/save", self._on_save, callback_group=service_group)
        self.create_timer(self.cfg.diagnostics_period, self._publish_diagnostics)
        self.create_timer(self.cfg.map_publish_period, self._publish_map)
        # output switches and thresholds may change while running (ros2 param set)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._running = True
        self._worker = threading.Thread(target=self._work, name="da3_worker", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------ set-up

    def _load_model(self) -> WindowModel:
        cfg = self.cfg
        self.get_logger().info(f"loading model {cfg.model!r} (device={cfg.device}, precision={cfg.precision}, "
                               f"process_res={cfg.process_res})")
        try:
            return load_window_model(cfg)
        except Exception as exc:  # noqa: BLE001 - report any loader failure in one line, then stop
            self.get_logger().fatal(f"cannot load model {cfg.model!r}: {exc}")
            raise

    def _create_publishers(self) -> None:
        types = {"depth": Image, "depth_info": CameraInfo, "confidence": Image, "points": PointCloud2,
                 "odometry": Odometry, "path": Path, "tf": TFMessage, "estimated_info": CameraInfo,
                 "keyframe": Keyframe}
        self.pubs = {name: self.create_publisher(types[name], topic, TF_QOS if name == "tf" else OUTPUT_QOS)
                     for name, topic in OUTPUT_TOPICS.items()}
        self.map_pub = self.create_publisher(PointCloud2, "map/points", LATCHED_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _create_subscriptions(self) -> None:
        c = self.cfg
        reliability = ReliabilityPolicy.BEST_EFFORT if c.input_reliability == "best_effort" else ReliabilityPolicy.RELIABLE
        # depth 1: only the newest frame matters; older ones would only add latency
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        if c.use_compressed:
            self.create_subscription(CompressedImage, "image/compressed",
                                     lambda m: self._on_image(m, True), qos)
        else:
            self.create_subscription(Image, "image", lambda m: self._on_image(m, False), qos)
        if c.use_camera_info:
            self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos)
        if c.external_odometry_topic:
            odom_qos = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST,
                                  reliability=ReliabilityPolicy.BEST_EFFORT)
            self.create_subscription(Odometry, c.external_odometry_topic, self._on_odometry, odom_qos)

    # ------------------------------------------------------------ callbacks (store only)

    def _on_image(self, msg, compressed: bool) -> None:
        with self.stats.lock:
            self.stats.received += 1
        self.slot.put(_Input(msg, compressed, time.monotonic()))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.pipeline.camera_info = msg  # checked against each image on the worker

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            T = pose_to_matrix(msg.pose.pose)
        except ValueError as exc:
            self._warn_bad(f"external odometry ignored: {exc}")
            return
        self.pipeline.odometry.add(stamp_to_sec(msg.header.stamp), T, msg.header.frame_id)

    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        options = self.pipeline.builder.options
        for p in params:
            if p.name == "publish_map":
                self.cfg.publish_map = bool(p.value)
            elif hasattr(options, p.name):  # publish_*, min/max depth, min_confidence, point_decimation
                setattr(options, p.name, p.value)
        return SetParametersResult(successful=True)

    def _on_reset(self, request, response):
        with self._pipeline_lock:
            self.pipeline.reset()
            self.slot.clear()
        self.get_logger().warning("~/reset: world frame, window, map and path cleared")
        response.success, response.message = True, "world frame, window, map and path cleared"
        return response

    def _on_save(self, request, response):
        directory = pathlib.Path(os.path.expanduser(self.cfg.save_directory))
        with self._pipeline_lock:
            xyz_world, rgb, stamps, c2w = self.pipeline.world_map_and_trajectory()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_ply(directory / "map.ply", xyz_world, rgb)
            write_tum(directory / "trajectory.tum", stamps, c2w)
        except OSError as exc:
            response.success, response.message = False, f"cannot write to {directory}: {exc}"
            return response
        response.success = True
        response.message = f"wrote {len(xyz_world)} map points to {directory / 'map.ply'} and {len(stamps)} poses " \
                           f"to {directory / 'trajectory.tum'} (world frame {self.cfg.world_frame})"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------ worker

    def _work(self) -> None:
        while self._running and rclpy.ok(context=self.context):
            item = self.slot.take(timeout=0.1)
            if item is None:
                continue
            try:
                with self._pipeline_lock:
                    answers = self.pipeline.process(item.msg, item.compressed, item.received)
                for answer in answers:
                    self._publish(answer)
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything one frame does
                with self.stats.lock:
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self.get_logger().error(f"frame failed, continuing with the next one: {exc}\n"
                                        f"{traceback.format_exc()}", throttle_duration_sec=THROTTLE_S)

    def _warn_bad(self, text: str) -> None:
        with self.stats.lock:
            self.stats.bad_inputs += 1
            self.stats.last_error = text
        self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S)

    def _publish(self, answer) -> None:
        for name, message in answer.outputs.items():
            self.pubs[name].publish(message)
        with self.stats.lock:
            self.stats.answered += 1
            self.stats.latencies_ms.append((time.monotonic() - answer.received) * 1e3)
            self.stats.window_fill = answer.window_fill

    # ------------------------------------------------------------ timers

    def _publish_map(self) -> None:
        if not self.cfg.publish_map:
            return
        if not self._pipeline_lock.acquire(timeout=0.01):
            return  # the worker is busy: the next tick will do
        try:
            cloud = self.pipeline.map_cloud(self.get_clock().now().to_msg())
        finally:
            self._pipeline_lock.release()
        if cloud is not None:
            self.map_pub.publish(cloud)

    def _publish_diagnostics(self) -> None:
        rx_rate, out_rate, latencies = self.stats.rates()
        s = self.stats
        with s.lock:
            received, answered, bad, fill, error = s.received, s.answered, s.bad_inputs, s.window_fill, s.last_error
        dropped = self.slot.dropped
        level, message = DiagnosticStatus.OK, "streaming"
        if received == 0:
            level, message = DiagnosticStatus.WARN, "no images received yet"
        elif answered == 0:
            level, message = DiagnosticStatus.WARN, "images received, none answered yet"
        values = {
            "model": self.model.name,
            "input_rate_hz": f"{rx_rate:.2f}",
            "output_rate_hz": f"{out_rate:.2f}",
            "latency_ms_mean": f"{np.mean(latencies):.1f}" if latencies else "n/a",
            "latency_ms_max": f"{np.max(latencies):.1f}" if latencies else "n/a",
            "frames_received": str(received),
            "frames_answered": str(answered),
            "frames_dropped": str(dropped),
            "bad_inputs": str(bad),
            "duplicate_stamps": str(self.pipeline.duplicates),
            "resets": str(self.pipeline.resets),
            "window_fill": f"{fill}/{self.cfg.window_size}",
            "intrinsics": self.pipeline.intrinsics_source,
            "scale": "metric (metres)" if self.model.metric else "relative (first window's unit)",
            "gpu_memory_mb": _gpu_memory_mb(),
            "last_error": error or "none",
        }
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: pipeline", message=message,
                                  hardware_id=self.model.name,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    def destroy_node(self):
        self._running = False
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def _gpu_memory_mb() -> str:
    import sys

    torch = sys.modules.get("torch")  # only if the model imported it
    if torch is None or not torch.cuda.is_available():
        return "n/a (cpu)"
    return f"{torch.cuda.memory_allocated() / 2**20:.0f} (peak {torch.cuda.max_memory_allocated() / 2**20:.0f})"


def main(args=None) -> int:
    from ..signals import install_signal_handlers

    install_signal_handlers()
    rclpy.init(args=args)
    node = None
    try:
        node = Da3Node()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - a start-up failure: one clear line, non-zero exit
        print(f"da3_node: {exc}", flush=True)
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
