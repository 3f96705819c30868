"""da3_node: live depth, point clouds and camera poses from a camera stream.

Data flow, three worker threads joined by latest-only hand-overs (a value not
taken yet is replaced by a newer one and counted as dropped, so no stage ever
works through a queue of stale frames):

  image callback -> one slot per camera -> inference thread: decode, Frame,
  streaming core (window, network, world frame) -> one slot -> output thread:
  the messages of the outputs someone subscribes to (depth, camera_info, TF,
  odometry, points, ...), published -> map backlog -> map thread: the frame's
  points into the world map.

Callbacks only store; the network never waits for message building (frame t's
messages are built while the network runs frame t+1), and a frame's messages
are out before any map work for it starts. The map may lag: its thread takes
its whole backlog at once (one insert), and beyond MAP_BACKLOG frames the
oldest are skipped and counted; the depth never waits for the map.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import pathlib
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Deque, Dict, FrozenSet, List, NamedTuple, Optional, Tuple

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockChange, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.service import Service
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage

from da3_ros.io.writers import write_json, write_ply, write_tum
from da3_ros.ros.conversions import pose_to_matrix, stamp_to_sec
from da3_ros.ros.frame_pipeline import FramePipeline
from da3_ros.ros.frames import TF_STATIC_QOS, OdometryHistory, StaticTree
from da3_ros.ros.outputs import OUTPUTS, Output
from da3_ros.ros.params import PARAMETERS, NodeConfig, check_value, declare_parameters, model_settings, validate
from da3_ros.stream.interface import WindowModel
from da3_ros.stream.result import StreamResult

THROTTLE_S = 5.0
#: while a rig is not metric, its state is repeated in the log at most this often (seconds)
RIG_STATE_LOG_S = 30.0
#: answered frames waiting for the map thread; beyond this the oldest are skipped
#: (counted): a map that cannot keep up lags, it never holds up the answers
MAP_BACKLOG = 8
#: per-frame stage marks kept for /diagnostics and the benchmark
TIMING_HISTORY = 1024


class _Input(NamedTuple):
    msg: Any
    compressed: bool
    received: float  # time.monotonic() at the callback, for latency
    camera: str = ""  # the rig camera it came from ("" for a single camera)


class LatestSlot:
    """One slot per camera: put() replaces what the worker has not taken yet of
    that camera (the newest image wins; the replaced ones are counted)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._items: Dict[str, _Input] = {}
        self.dropped = 0

    def put(self, item: _Input) -> None:
        with self._cond:
            if item.camera in self._items:
                self.dropped += 1
            self._items[item.camera] = item
            self._cond.notify()

    def take(self, timeout: float) -> List[_Input]:
        """Every camera's waiting image (oldest stamp first), after waiting up to
        `timeout` s for one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items, self._items = list(self._items.values()), {}
        return sorted(items, key=lambda item: stamp_to_sec(item.msg.header.stamp))

    @property
    def empty(self) -> bool:
        with self._cond:
            return not self._items

    def clear(self) -> None:
        with self._cond:
            self._items = {}


class Handover:
    """Items from one thread to another, at most `cap` waiting: put() drops the
    oldest beyond that (newest wins) and returns what it dropped; take() returns
    everything waiting, after waiting up to `timeout` s for something."""

    def __init__(self, cap: int):
        self._cond = threading.Condition()
        self._items: Deque[Any] = deque()
        self.cap = cap

    def put(self, item: Any) -> List[Any]:
        with self._cond:
            self._items.append(item)
            dropped = [self._items.popleft() for _ in range(len(self._items) - self.cap)]
            self._cond.notify()
        return dropped

    def take(self, timeout: float) -> List[Any]:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
        return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()


class Stats:
    """Counters and rates for /diagnostics (written by the workers, read by a timer)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.received = 0
        self.answered = 0
        self.bad_inputs = 0
        self.latencies_ms: list = []
        self.last_error = ""
        self.window_fill = 0
        self.answers_dropped = 0  # answered, then replaced by a newer answer before publishing
        self.map_inserted = 0  # frames whose points went into the map
        self.map_skipped = 0  # frames whose map work was skipped (backlog full)
        #: per map insert (one per take of the backlog): (ms, frames, map points after)
        self.map_log: Deque[Tuple[float, int, int]] = deque(maxlen=TIMING_HISTORY)
        #: per published frame: its stage marks (time.monotonic(), see FrameSource.marks)
        self.frame_marks: Deque[Dict[str, float]] = deque(maxlen=TIMING_HISTORY)
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


#: CPython's GIL hand-over interval while a node runs (the default is 5 ms). The
#: inference thread gives the GIL up at every blocking torch / CUDA call and then
#: waits up to one interval to get it back behind the executor, output and map
#: threads (a convoy): with a camera at a fixed rate every network call got several
#: times slower. `da3_ros bench-node`, embedded da3-tiny on the 2-core CPU box,
#: 320x240 at 30 Hz: network 1381 -> 398 ms per frame (354 ms with images only
#: when idle), 0.5 -> 1.9 FPS, latency p99 6.0 -> 1.0 s, with 0.5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005


class Da3Node(LifecycleNode):
    """ROS 2 node around the streaming core, a managed (lifecycle) node:

    unconfigured -> configure (load the model, warm up; a failure returns
    FAILURE with the reason and the node stays up) -> inactive -> activate
    (subscriptions, publishers and workers live) -> active -> deactivate (stop
    answering; the model and the world are kept) -> cleanup (the model and GPU
    memory freed) -> shutdown.

    `autostart` (da3_node) configures and activates at once and raises if the
    model cannot be loaded; da3_managed_node leaves the transitions to a launch
    file or lifecycle manager. `model` injects a WindowModel (tests, the demo);
    otherwise the `model` parameter is loaded at configure."""

    def __init__(self, model: Optional[WindowModel] = None, autostart: bool = True, **kwargs):
        super().__init__("da3_node", **kwargs)
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # process-wide: the node's threads are most of this process
        self._running = False
        self._threads: List[threading.Thread] = []
        self.cfg: NodeConfig = declare_parameters(self)
        self._injected_model = model
        self.model: Optional[WindowModel] = None
        self.pipeline: Optional[FramePipeline] = None
        self.stats = Stats()
        self.slot = LatestSlot()
        self._answers = Handover(1)  # the newest answered batch, for the output thread
        self._map_work = Handover(MAP_BACKLOG)  # results whose points go into the map
        self._pipeline_lock = threading.Lock()  # the inference thread and the services take turns
        self._pending_cfg: Optional[NodeConfig] = None  # validated parameter changes, applied by the worker
        self._reset_request: Optional[str] = None
        self._clock_jump = None
        self._stream_status: Dict[str, Any] = {}  # the streaming core's state for /diagnostics
        self._rig_states_logged: tuple = ()  # the rig cameras' states last logged
        self._configured: List[Any] = []  # publishers, services, timers, subscriptions made by configure
        self._activated: List[Any] = []  # ... and by activate
        self.configure_error = ""
        # thresholds and output switches may change while running (ros2 param set):
        # validated here, applied by the inference thread before its next frame
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError(self.configure_error or "configure failed")
            self.trigger_activate()

    # ------------------------------------------------------------ lifecycle

    def on_configure(self, state) -> TransitionCallbackReturn:
        self._apply_requests()
        try:
            self.model = self._injected_model if self._injected_model is not None else self._load_model()
        except Exception as exc:  # noqa: BLE001 - any loader failure: FAILURE with the reason, the node stays up
            self.configure_error = f"cannot load model {self.cfg.model!r}: {exc}"
            self.get_logger().error(self.configure_error)
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"model ready: {self.model.name}")
        self.static_tf = StaticTree()  # fed by the /tf_static subscription below
        self._configured.append(self.create_subscription(TFMessage, "/tf_static", self.static_tf.add, TF_STATIC_QOS))
        # live: a rig answers the newest rig frame released at once (the newest wins, as for one camera)
        self.pipeline = FramePipeline(self.model, self.cfg, self._warn_bad, self.static_tf.lookup, OdometryHistory(),
                                      notice=self.get_logger().warning, map_deferred=True, newest_only=True)
        self._warn_config()
        self._warm_up()
        self.pubs = {(o.name, camera): self.create_lifecycle_publisher(o.msg_type, o.topic_for(camera), o.qos)
                     for o in OUTPUTS for camera in (self.cfg.cameras if o.per_camera and self.cfg.cameras else [""])}
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._configured += [
            self.diag_pub,
            self.create_service(Trigger, "~/reset", self._on_reset),
            self.create_service(Trigger, "~/save", self._on_save),
            self.create_timer(self.cfg.diagnostics_period, self._guarded(self._publish_diagnostics)),
        ]
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._apply_requests()
        # the map's and path's periods bound their cost, not a rate of the data: the steady
        # clock (a bag paused or ended under use_sim_time still gets its last map and path)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._activated = self._create_subscriptions() + [
            self.create_timer(self.cfg.map_publish_period, self._guarded(self._publish_map), clock=steady),
            self.create_timer(self.cfg.path_publish_period, self._guarded(self._publish_path), clock=steady)]
        # simulated time jumping back (a bag restarted with --clock): the old world no longer applies
        self._clock_jump = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=self._on_clock_jump)
        self._running = True
        self._threads = [threading.Thread(target=self._infer_loop, name="da3_inference", daemon=True),
                         threading.Thread(target=self._output_loop, name="da3_output", daemon=True),
                         threading.Thread(target=self._map_loop, name="da3_map", daemon=True)]
        for thread in self._threads:
            thread.start()
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.get_logger().info("active: answering frames")
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._stop_active()
        self.get_logger().info("inactive: frames are not answered; the model and the world are kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model released")
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_active()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state) -> TransitionCallbackReturn:
        self._stop_active()
        self._release()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured, ready to configure again

    def _stop_active(self) -> None:
        """Stop taking frames (the frame in flight finishes and is published), then
        drop the subscriptions and timers of the active state."""
        self.stop()
        for entity in self._activated:
            self._destroy(entity)
        self._activated = []
        if self._clock_jump is not None:
            self._clock_jump.unregister()
            self._clock_jump = None
        self.slot.clear()

    def _release(self) -> None:
        """Free what configure made: publishers, services, the pipeline and the model."""
        for entity in self._configured:
            self._destroy(entity)
        for pub in getattr(self, "pubs", {}).values():
            self.destroy_lifecycle_publisher(pub)
        self._configured, self.pubs = [], {}
        self.pipeline = None
        self.model = None
        gc.collect()
        torch = sys.modules.get("torch")  # only if the model imported it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _destroy(self, entity) -> None:
        for kind, destroy in ((Subscription, self.destroy_subscription), (Timer, self.destroy_timer),
                              (Service, self.destroy_service), (Publisher, self.destroy_publisher)):
            if isinstance(entity, kind):
                destroy(entity)
                return

    # ------------------------------------------------------------ set-up

    def _load_model(self) -> WindowModel:
        from da3_ros.runtime.models import make_window_model

        cfg = self.cfg
        self.get_logger().info(f"loading model {cfg.model!r} (device={cfg.device}, precision={cfg.precision}, "
                               f"process_res={cfg.process_res})")
        return make_window_model(model_settings(cfg))

    def _warn_config(self) -> None:
        if self.cfg.external_odometry_topic and self.cfg.publish_tf:
            self.get_logger().warning(
                "external odometry and publish_tf are both on: if the odometry source already publishes "
                f"{self.cfg.world_frame} -> {self.cfg.base_frame or 'its base'}, set publish_tf:=false "
                "(a TF frame has one parent)")

    def _warm_up(self) -> None:
        if self.cfg.warmup_width and self.cfg.warmup_height:
            seconds = self.pipeline.warmup(self.cfg.warmup_width, self.cfg.warmup_height)
            self.get_logger().info(f"network warmed up for {self.cfg.warmup_width}x{self.cfg.warmup_height} "
                                   f"images in {seconds:.1f} s")

    def _create_subscriptions(self) -> List[Subscription]:
        c = self.cfg
        reliability = ReliabilityPolicy.BEST_EFFORT if c.input_reliability == "best_effort" else ReliabilityPolicy.RELIABLE
        # depth 1: only the newest frame matters; older ones would only add latency
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        subs = []
        for camera in c.cameras or [""]:
            prefix = f"{camera}/" if camera else ""
            if c.use_compressed:
                subs.append(self.create_subscription(CompressedImage, prefix + "image/compressed",
                                                     lambda m, cam=camera: self._on_image(m, True, cam), qos))
            else:
                subs.append(self.create_subscription(Image, prefix + "image",
                                                     lambda m, cam=camera: self._on_image(m, False, cam), qos))
            if c.use_camera_info:
                subs.append(self.create_subscription(CameraInfo, prefix + "camera_info",
                                                     lambda m, cam=camera: self.pipeline.set_camera_info(cam, m), qos))
        if c.external_odometry_topic:
            odom_qos = QoSProfile(depth=50, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.BEST_EFFORT)
            subs.append(self.create_subscription(Odometry, c.external_odometry_topic, self._on_odometry, odom_qos))
        return subs

    # ------------------------------------------------------------ callbacks (store only)

    def _on_image(self, msg, compressed: bool, camera: str = "") -> None:
        with self.stats.lock:
            self.stats.received += 1
        self.slot.put(_Input(msg, compressed, time.monotonic(), camera))

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            T = pose_to_matrix(msg.pose.pose)
        except ValueError as exc:
            self._warn_bad(f"external odometry ignored: {exc}")
            return
        self.pipeline.odometry.add(stamp_to_sec(msg.header.stamp), T, msg.header.frame_id)

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validation only: a bad value (or a combination, e.g. min_depth above
        max_depth) is refused with the reason; accepted ones are applied after."""
        base = self._pending_cfg or self.cfg
        changes: Dict[str, Any] = {}
        try:
            for p in params:
                if p.name not in PARAMETERS:
                    continue  # not ours (use_sim_time, ...)
                value = float(p.value) if isinstance(PARAMETERS[p.name].default, float) else p.value
                check_value(p.name, value)
                changes[p.name] = value
            candidate = dataclasses.replace(base, **changes)
            validate(candidate)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if changes:
            self._pending_cfg = candidate
        return SetParametersResult(successful=True)

    def _on_clock_jump(self, jump) -> None:
        # only a jump of simulated time itself: switching the time source on or off is not a restart
        if jump.clock_change == ClockChange.ROS_TIME_NO_CHANGE and jump.delta.nanoseconds < 0:
            self._reset_request = "clock_jumped_back"

    def _on_reset(self, request, response):
        self._reset("reset_called")
        response.success, response.message = True, "world frame, window, map and path cleared"
        return response

    def _reset(self, reason: str) -> None:
        """The one reset, for ~/reset and a clock jump (a restart of stamps is
        found and reset by the session itself): the session, the odometry
        history and the images not taken yet."""
        with self._pipeline_lock:
            if self.pipeline is None:
                return
            self.pipeline.reset(reason)
            self.slot.clear()
        self.get_logger().warning(f"{reason}: world frame, window, map and path reset")

    def _on_save(self, request, response):
        directory = pathlib.Path(os.path.expanduser(self.cfg.save_directory))
        with self._pipeline_lock:
            xyz_world, rgb, stamps, c2w = self.pipeline.world_map_and_trajectory()
            rig = self.pipeline.streamer.rig.to_dict() if self.pipeline.streamer.rig is not None else None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_ply(directory / "map.ply", xyz_world, rgb)
            write_tum(directory / "trajectory.tum", stamps, c2w)
            if rig is not None:  # the rig's scale and the extrinsics estimated from the model
                write_json(directory / "rig.json", rig)
        except OSError as exc:
            response.success, response.message = False, f"cannot write to {directory}: {exc}"
            return response
        response.success = True
        response.message = f"wrote {len(xyz_world)} map points to {directory / 'map.ply'} and {len(stamps)} poses " \
                           f"to {directory / 'trajectory.tum'} (world frame {self.cfg.world_frame})"
        self.get_logger().info(response.message)
        return response

    # ------------------------------------------------------------ workers

    def _infer_loop(self) -> None:
        """Inference thread: parameter changes and resets, then frame -> results,
        handed to the output thread (the newest batch wins)."""
        while self._running:
            items = self.slot.take(timeout=0.1)
            self._apply_requests()  # after the wait: a change made meanwhile applies to this frame
            try:
                if not items:
                    continue
                taken = time.monotonic()
                with self._pipeline_lock:
                    frames = [self.pipeline.to_frame(v.msg, v.compressed, v.received, v.camera) for v in items]
                    decoded = time.monotonic()
                    results = self.pipeline.push_frames([f for f in frames if f is not None])
                    answered = time.monotonic()
                    self._stream_status = self._read_stream_status()
                if results:
                    for r in results:
                        r.meta.marks.update(taken=taken, decoded=decoded, answered=answered)
                    self._drop_answers(self._answers.put(results))
            except Exception as exc:  # noqa: BLE001 - the worker must survive anything one frame does
                self._report_failure(exc)

    def _drop_answers(self, batches: List[List[StreamResult]]) -> None:
        """Answers replaced by newer ones before their messages were built: counted;
        their points still go to the map (a keyframe's view of the world)."""
        if not batches:
            return
        with self.stats.lock:
            self.stats.answers_dropped += sum(len(b) for b in batches)
        for batch in batches:
            self._to_map(batch)

    def _to_map(self, results: List[StreamResult]) -> None:
        """Results that feed the map, to the map thread (while the map is wanted)."""
        feed = [r for r in results if r.in_map]
        if not feed or "map" not in self._wanted():
            return
        skipped = 0
        for r in feed:
            skipped += len(self._map_work.put(r))
        if skipped:
            with self.stats.lock:
                self.stats.map_skipped += skipped

    def _read_stream_status(self) -> Dict[str, Any]:
        """What /diagnostics reports of the streaming session, read on the inference
        thread (the diagnostics timer must not read the core while it changes)."""
        status = {**self.pipeline.session.status(), "intrinsics": self.pipeline.intrinsics_source}
        rig = status.get("rig")
        if rig is not None and self.pipeline.streamer.rig is not None:
            for camera in self.cfg.cameras:
                looked_for = self.pipeline.calibration_lookup(camera)
                if rig.get(f"{camera}_state") == "no_calibration" and looked_for:
                    rig[camera] = f"no calibration: {looked_for}"
            self._log_rig_state(rig)
        return status

    def _log_rig_state(self, rig: Dict[str, str]) -> None:
        """Say the rig's state per camera when it changes, and remind (throttled)
        while the world is not metric: the scale the outputs carry depends on it."""
        line = "rig scale: " + "; ".join(f"{c} {rig[f'{c}_state']} ({rig[c]})" for c in self.cfg.cameras)
        states = tuple(rig[f"{c}_state"] for c in self.cfg.cameras)
        logger = self.get_logger()
        if states != self._rig_states_logged:
            self._rig_states_logged = states
            if set(states) <= {"metric", "pending"}:
                logger.info(line)
            else:  # rclpy wants one severity per call site
                logger.warning(line)
        elif rig["state"] != "metric":
            logger.info(line, throttle_duration_sec=RIG_STATE_LOG_S)

    def _apply_requests(self) -> None:
        cfg, self._pending_cfg = self._pending_cfg, None
        reason, self._reset_request = self._reset_request, None
        if cfg is None and reason is None:
            return  # the usual case: no lock taken on every tick of the worker
        with self._pipeline_lock:
            if cfg is not None:
                if self.pipeline is not None:
                    self.pipeline.apply(cfg)
                self.cfg = cfg
        if reason is not None:
            self._reset(reason)

    def _output_loop(self) -> None:
        """Output thread: the messages of the wanted outputs of the newest answered
        batch, published; then its map work handed on. Runs until the inference
        thread has stopped and its last answer is out."""
        inference = self._threads[0]
        while self._running or inference.is_alive() or len(self._answers):
            for batch in self._answers.take(timeout=0.1):
                try:
                    self._publish(batch)
                except Exception as exc:  # noqa: BLE001 - one frame's messages must not stop the next
                    if not rclpy.ok(context=self.context):
                        return  # shutting down: nothing can be published any more
                    self._report_failure(exc)
                self._to_map(batch)

    def _publish(self, batch: List[StreamResult]) -> None:
        for result in batch:
            camera = result.meta.camera
            marks = result.meta.marks
            marks["received"], marks["built"] = result.meta.received, time.monotonic()
            for output, msg in self.pipeline.messages(result, self._wanted(camera)):
                self.pubs[self._pub_key(output, camera)].publish(msg)
                marks[output.name] = time.monotonic()  # when each message went out
            marks["published"] = time.monotonic()
            marks["stamp"], marks["map_points"] = result.stamp, self.pipeline.streamer.map_size
            with self.stats.lock:
                self.stats.answered += 1
                self.stats.latencies_ms.append((marks["published"] - result.meta.received) * 1e3)
                self.stats.window_fill = result.window_fill
                self.stats.frame_marks.append(marks)

    def _map_loop(self) -> None:
        """Map thread: everything the map's backlog holds, in one insert. Runs until
        the output thread has stopped and the backlog is empty."""
        output = self._threads[1]
        while self._running or output.is_alive() or len(self._map_work):
            results = self._map_work.take(timeout=0.1)
            if not results:
                continue
            t0 = time.monotonic()
            try:
                self.pipeline.insert_map(results)
            except Exception as exc:  # noqa: BLE001 - one insert's failure must not stop the map
                self._report_failure(exc)
                continue
            ms = 1e3 * (time.monotonic() - t0)
            with self.stats.lock:
                self.stats.map_inserted += len(results)
                self.stats.map_log.append((ms, len(results), self.pipeline.streamer.map_size))

    def _pub_key(self, output: Output, camera: str) -> Tuple[str, str]:
        return (output.name, camera if output.per_camera and self.cfg.cameras else "")

    def _wanted(self, camera: str = "") -> FrozenSet[str]:
        """Outputs switched on and, for the costly ones, with a subscriber (a
        rig camera's own outputs: on its topics)."""
        on = self.pipeline.switched_on
        wanted = []
        for o in OUTPUTS:
            pub = self.pubs.get(self._pub_key(o, camera))
            if o.name in on and pub is not None and (not o.lazy or pub.get_subscription_count() > 0):
                wanted.append(o.name)
        return frozenset(wanted)

    def _guarded(self, callback):
        """A timer callback that reports its failure instead of raising into the
        executor (which would end the node's spin)."""
        def run():
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - a diagnostics or map tick must not stop the node
                if rclpy.ok(context=self.context):
                    self._report_failure(exc)
        return run

    def _report_failure(self, exc: Exception) -> None:
        with self.stats.lock:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"frame failed, continuing with the next one: {exc}\n{traceback.format_exc()}",
                                throttle_duration_sec=THROTTLE_S)

    def _warn_bad(self, text: str) -> None:
        with self.stats.lock:
            self.stats.bad_inputs += 1
            self.stats.last_error = text
        self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S)

    # ------------------------------------------------------------ timers

    def _publish_map(self) -> None:
        if "map" not in self._wanted():
            return
        cloud = self.pipeline.map_cloud(self.get_clock().now().to_msg())  # the map has its own lock
        if cloud is not None:
            self.pubs[("map", "")].publish(cloud)

    def _publish_path(self) -> None:
        if "path" not in self._wanted():
            return
        path = self.pipeline.path_message()  # the builder has its own lock for the path
        if path is not None:
            self.pubs[("path", "")].publish(path)

    def _publish_diagnostics(self) -> None:
        rx_rate, out_rate, latencies = self.stats.rates()
        s = self.stats
        with s.lock:
            received, answered, bad, fill, error = s.received, s.answered, s.bad_inputs, s.window_fill, s.last_error
            superseded, map_inserted, map_skipped = s.answers_dropped, s.map_inserted, s.map_skipped
            map_ms = [ms for ms, _, _ in list(s.map_log)[-20:]]
        stream = self._stream_status
        counts = stream.get("counts", {})
        level, message = DiagnosticStatus.OK, "streaming"
        if not self._running:
            level, message = DiagnosticStatus.WARN, "inactive (lifecycle): frames are not answered"
        elif received == 0:
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
            # newest wins: images replaced before the inference thread took them, and
            # answers replaced before their messages were built
            "frames_dropped": str(self.slot.dropped + superseded),
            "frames_dropped_input": str(self.slot.dropped),
            "frames_dropped_answered": str(superseded),
            "map_frames_inserted": str(map_inserted),
            "map_frames_skipped": str(map_skipped),
            "map_backlog": str(len(self._map_work)),
            "map_insert_ms_mean": f"{np.mean(map_ms):.1f}" if map_ms else "n/a",
            "captures_after_warmup": str(getattr(self.model, "captures_after_warmup", 0)),
            "bad_inputs": str(bad),
            "duplicate_stamps": str(counts.get("duplicate_stamp", 0)),
            "stamp_outliers": str(counts.get("stamp_backwards_outlier", 0) + counts.get("stamp_forward_outlier", 0)),
            "resolution_changes": str(counts.get("resolution_changes", 0)),
            "resets": str(counts.get("resets", 0)),
            "window_fill": f"{fill}/{self.cfg.window_size}",
            "intrinsics": stream.get("intrinsics", "none yet"),
            "scale": "metric (metres)" if stream.get("metric") else "relative (first window's unit)",
            "gpu_memory_mb": _gpu_memory_mb(),
            "last_error": error or "none",
        }
        values.update({f"rig_{k}": v for k, v in stream.get("rig", {}).items()})
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: pipeline", message=message,
                                  hardware_id=self.model.name,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        self.diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                              status=[status]))

    # ------------------------------------------------------------ stop

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking frames, let the frame in flight finish and its messages go
        out, then stop the threads (call before the context shuts down)."""
        self._running = False
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=timeout)
        self._threads = []

    def destroy_node(self):
        self.stop()
        return super().destroy_node()


def _gpu_memory_mb() -> str:
    import sys

    torch = sys.modules.get("torch")  # only if the model imported it
    if torch is None or not torch.cuda.is_available():
        return "n/a (cpu)"
    return f"{torch.cuda.memory_allocated() / 2**20:.0f} (peak {torch.cuda.max_memory_allocated() / 2**20:.0f})"


def node_executor(context=None) -> SingleThreadedExecutor:
    """The executor da3_node spins in (main, and bench-node as it measures the node).

    Single-threaded: every callback only stores (the image slot, camera_info,
    odometry) or is short (a map or path message, ~/save's binary files), and the
    work is on the node's own threads. rclpy's MultiThreadedExecutor rebuilds its
    wait set in Python for every message and every finished task, and held the GIL
    for a third of the node's time: with an oracle network of 28 ms (GIL free, as a
    GPU's) at a 30 Hz camera it answered 17.6 FPS (p99 180 ms), this one 29 FPS (p99
    75 ms) (bench-node on the 2-core box)."""
    return SingleThreadedExecutor(context=context)


def spin_until_shutdown(executor) -> None:
    """executor.spin() on a thread of its own: the context's shutdown ends it, quietly."""
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def main(args=None, managed: bool = False) -> int:
    """Spin until SIGINT / SIGTERM, then stop the workers BEFORE the context goes
    (a frame in flight still publishes), and exit 0. `managed`: start
    unconfigured and wait for lifecycle transitions (da3_managed_node)."""
    from rclpy.signals import SignalHandlerOptions

    from ..signals import install_signal_handlers

    install_signal_handlers()
    stop = threading.Event()
    # rclpy's own handler would shut the context down under the workers' feet
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = None
    try:
        node = Da3Node(autostart=not managed)
        executor = node_executor()
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - a start-up failure (a parameter, the model): one line, exit 2
        print(f"da3_node: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        if node is not None:
            node.stop()
            node.get_logger().info("stopped")
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main_managed(args=None) -> int:
    """`ros2 run da3_ros da3_managed_node`: da3_node as a managed (lifecycle) node."""
    return main(args, managed=True)
