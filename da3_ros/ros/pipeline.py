"""The node's per-frame work, without DDS: image message in, output messages out.

image message -> RGB + intrinsics (+ external pose) -> Frame -> streaming core
-> StreamResult -> world anchor -> FrameOutputs. The live node feeds it from its
worker thread; `da3_ros process-bag` feeds it from a bag. Not thread-safe: one
caller at a time (the node holds a lock around it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
from sensor_msgs.msg import CameraInfo

from da3_ros.io.camera_info import CameraInfoError, CameraInfoReader
from da3_ros.io.images import ImageDecodeError
from da3_ros.ros.conversions import compressed_to_rgb, image_to_rgb, stamp_to_sec
from da3_ros.ros.frames import T_BODY_OPTICAL, OdometryHistory, WorldAnchor
from da3_ros.ros.messages import FrameOutputs, OutputBuilder, OutputOptions, map_cloud
from da3_ros.ros.params import NodeConfig, model_settings, stream_config
from da3_ros.stream.interface import Frame, WindowModel
from da3_ros.stream.pipeline import Streamer

DEFAULT_OPTICAL_FRAME = "camera_optical_frame"


def output_options(cfg: NodeConfig) -> OutputOptions:
    return OutputOptions(
        world_frame=cfg.world_frame, base_frame=cfg.base_frame, min_depth=cfg.min_depth, max_depth=cfg.max_depth,
        min_confidence=cfg.min_confidence, point_decimation=cfg.point_decimation,
        path_max_length=cfg.path_max_length, publish_depth=cfg.publish_depth,
        publish_confidence=cfg.publish_confidence, publish_points=cfg.publish_points,
        publish_odometry=cfg.publish_odometry, publish_keyframes=cfg.publish_keyframes, publish_tf=cfg.publish_tf)


def load_window_model(cfg: NodeConfig) -> WindowModel:
    """The model the `model` parameter names (hub id, directory, .safetensors,
    random:<variant>, oracle:<dir>), on the configured device and precision."""
    from da3_ros.runtime.models import make_window_model

    return make_window_model(model_settings(cfg))


@dataclass
class _Pending:
    stamp: object  # builtin_interfaces/Time of the image
    optical_frame: str
    T_base_optical: Optional[np.ndarray]
    received: float  # caller's clock at arrival, for latency


@dataclass
class Answer:
    """The outputs of one answered frame, with what diagnostics need."""

    outputs: FrameOutputs
    received: float
    window_fill: int


class FramePipeline:
    """Turns image messages into output messages (see module docstring).

    warn(text): called for every bad input, already phrased for a log line.
    notice(text): called for remarks on the configuration (default: warn).
    lookup_static(target, source) -> T_target_source or None: the /tf_static tree.
    """

    def __init__(self, model: WindowModel, cfg: NodeConfig, warn: Callable[[str], None],
                 lookup_static: Callable[[str, str], Optional[np.ndarray]] = lambda target, source: None,
                 odometry: Optional[OdometryHistory] = None, notice: Optional[Callable[[str], None]] = None):
        self.cfg = cfg
        self.model = model
        self.streamer = Streamer(model, stream_config(cfg))
        self.builder = OutputBuilder(output_options(cfg))
        self.anchor = WorldAnchor()
        self.odometry = odometry or OdometryHistory()
        self._warn = warn
        self._notice = notice or warn  # configuration remarks, not bad input
        self._frame_mismatch_told = False
        self._warmed: set = set()  # image sizes the model was warmed up for
        self._lookup_static = lookup_static
        self.camera_info: Optional[CameraInfo] = None
        self._camera_info_reader = CameraInfoReader(cfg.input_rectified)  # setup remarks said once
        self.intrinsics_source = "none yet"
        self.resets = 0
        self.duplicates = 0
        self._last_stamp: Optional[float] = None
        self._frame_index = 0
        # frames whose answer may still come (stride > 1), oldest first
        self._pending: "OrderedDict[int, _Pending]" = OrderedDict()

    # ------------------------------------------------------------ state

    def reset(self) -> None:
        self.streamer.reset()
        self.anchor.reset()
        self.builder.reset()
        self.odometry.clear()
        self._pending.clear()
        self._last_stamp = None
        self.resets += 1

    def map_cloud(self, stamp):
        """The world map as a PointCloud2 in the published world frame (None before the first answer)."""
        if self.anchor.T_world_stream is None:
            return None
        xyz, rgb = self.streamer.map_points()
        return map_cloud(xyz, rgb, self.anchor.T_world_stream, stamp, self.cfg.world_frame)

    def world_map_and_trajectory(self) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, np.ndarray]:
        """(map xyz, map rgb, stamps, optical-frame c2w) in the published world frame."""
        T = self.anchor.T_world_stream if self.anchor.T_world_stream is not None else np.eye(4)
        xyz, rgb = self.streamer.map_points()
        stamps, c2w = self.streamer.trajectory()
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]
        return xyz, rgb, np.asarray(stamps, dtype=np.float64), T @ np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)

    # ------------------------------------------------------------ frames

    def process(self, msg, compressed: bool, received: float = 0.0) -> List[Answer]:
        """One image message (sensor_msgs/Image or CompressedImage) -> the
        answers it produced (none when the frame was rejected or is waiting
        for its window). Bad input is reported through warn() and skipped."""
        stamp = stamp_to_sec(msg.header.stamp)
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageDecodeError as exc:
            self._warn(f"dropping image at t={stamp:.3f}: {exc}")
            return []
        if stamp == self._last_stamp:
            # the same frame again (a re-sent sample, a driver publishing twice):
            # answering it twice would put two poses at one stamp
            self.duplicates += 1
            return []
        if self._last_stamp is not None and stamp < self._last_stamp:
            # a looping bag or a restarted driver: the old world no longer applies
            self._warn(f"time went backwards by {self._last_stamp - stamp:.3f} s (looping bag?): "
                       "world frame, window, map and path reset")
            self.reset()
        height, width = rgb.shape[:2]

        optical_frame = self.cfg.camera_frame or msg.header.frame_id or DEFAULT_OPTICAL_FRAME
        intrinsics = self._intrinsics(width, height)

        T_base_optical = None
        if self.cfg.base_frame:
            T_base_optical = self._lookup_static(self.cfg.base_frame, optical_frame)
            if T_base_optical is None:
                self._warn(f"waiting for /tf_static to connect {self.cfg.base_frame} and {optical_frame}; "
                           "frame skipped")
                return []

        c2w_external = None
        if self.cfg.external_odometry_topic:
            found = self.odometry.nearest(stamp, self.cfg.external_odometry_max_dt)
            if found is None:
                self._warn(f"no external odometry within {self.cfg.external_odometry_max_dt} s of "
                           f"t={stamp:.3f}; frame skipped")
                return []
            T_world_base, odom_frame = found
            if odom_frame and odom_frame != self.cfg.world_frame and not self._frame_mismatch_told:
                # poses are in the odometry's world: labelling them with another frame is wrong
                self._frame_mismatch_told = True
                self._notice(f"external odometry is in frame {odom_frame!r} but world_frame is "
                             f"{self.cfg.world_frame!r}: set world_frame:={odom_frame}")
            c2w_external = T_world_base @ (T_base_optical if T_base_optical is not None else T_BODY_OPTICAL)

        self.warmup(width, height)
        # only a frame that reaches the stream counts as seen: a frame skipped
        # above (no /tf_static yet) may come again with the same stamp
        self._last_stamp = stamp
        frame = Frame(index=self._frame_index, stamp=stamp, image=np.ascontiguousarray(rgb),
                      intrinsics=intrinsics, c2w_external=c2w_external)
        self._frame_index += 1
        self._pending[frame.index] = _Pending(msg.header.stamp, optical_frame, T_base_optical, received)
        while len(self._pending) > 4 * max(self.cfg.window_size, self.cfg.stride):
            self._pending.popitem(last=False)

        try:
            results = self.streamer.push(frame)
        except ValueError as exc:  # the streaming core rejected the frame (shape, dtype, ...)
            self._warn(f"frame at t={stamp:.3f} rejected: {exc}")
            return []
        return [answer for answer in map(self._answer, results) if answer is not None]

    def warmup(self, width: int, height: int) -> float:
        """Let the model compile / capture its fixed shapes for width x height
        frames (once per size). Returns the seconds it took (0 if nothing to do)."""
        warm = getattr(self.model, "warmup", None)
        if warm is None or (width, height) in self._warmed:
            return 0.0
        self._warmed.add((width, height))
        return float(warm(width, height, self.cfg.window_size) or 0.0)

    def flush(self) -> List[Answer]:
        """Answers for the frames still waiting for a full stride (end of input)."""
        return [answer for answer in map(self._answer, self.streamer.flush()) if answer is not None]

    def _intrinsics(self, width: int, height: int) -> Optional[np.ndarray]:
        info = self.camera_info
        intrinsics = None
        if info is not None and self.cfg.use_camera_info:
            try:
                intrinsics, notes = self._camera_info_reader.read(info, width, height)
            except CameraInfoError as exc:
                self._warn(f"ignoring camera_info, estimating intrinsics instead: {exc}")
            else:
                for note in notes:
                    self._notice(note)
        self.intrinsics_source = "camera_info" if intrinsics is not None else "estimated"
        return intrinsics

    def _answer(self, result) -> Optional[Answer]:
        pending = self._pending.pop(result.index, None)
        if pending is None:
            return None  # a frame from before a reset
        if self.anchor.T_world_stream is None:
            if self.cfg.external_odometry_topic:
                self.anchor.set_identity()  # the external odometry's frame is the world
            else:
                self.anchor.anchor(result.c2w, pending.T_base_optical if pending.T_base_optical is not None
                                   else T_BODY_OPTICAL)
        outputs = self.builder.build(result, pending.stamp, pending.optical_frame,
                                     self.anchor.world_pose(result.c2w), pending.T_base_optical)
        return Answer(outputs, pending.received, result.window_fill)
