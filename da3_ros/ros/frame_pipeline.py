"""The node's per-frame work, without DDS: image message in, output messages out.

image message -> RGB + intrinsics (+ base transform, + external pose) -> Frame
-> the streaming session (`stream.session.Session`: rig synchronisation, every
per-frame decision, reset) -> StreamResult -> messages of the wanted outputs
(ros.outputs).

The live node runs `to_frame` + `push_frames` on its inference thread and
`build` on its output thread, and `insert_map` on its map thread after the
frame's messages are out; `da3_ros process-bag` calls `process` (the map is
filled inside the session there). `to_frame`/`push_frames`/`reset`/`apply` from one thread at a time
(the node holds a lock); `build` from one (other) thread.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

import numpy as np
from sensor_msgs.msg import CameraInfo

from da3_ros.geometry.transforms import T_BODY_OPTICAL
from da3_ros.io.camera_info import CameraInfoError, CameraInfoReader
from da3_ros.io.images import ImageDecodeError
from da3_ros.ros.conversions import compressed_to_rgb, image_to_rgb, stamp_to_sec
from da3_ros.ros.frames import OdometryHistory
from da3_ros.ros.outputs import FrameSource, Output, OutputBuilder, map_cloud, switched_on
from da3_ros.ros.params import NodeConfig, output_options, stream_config
from da3_ros.stream.interface import Frame, WindowModel
from da3_ros.stream.pipeline import Streamer
from da3_ros.stream.result import StreamResult
from da3_ros.stream.session import Session

DEFAULT_OPTICAL_FRAME = "camera_optical_frame"


class FramePipeline:
    """Turns image messages into output messages (see module docstring).

    warn(text): called for every bad input, already phrased for a log line.
    notice(text): called for remarks on the configuration (default: warn).
    lookup_static(target, source) -> T_target_source or None: the /tf_static tree.
    newest_only: a rig answers only the newest rig frame released at once (live).
    """

    def __init__(self, model: WindowModel, cfg: NodeConfig, warn: Callable[[str], None],
                 lookup_static: Callable[[str, str], Optional[np.ndarray]] = lambda target, source: None,
                 odometry: Optional[OdometryHistory] = None, notice: Optional[Callable[[str], None]] = None,
                 map_deferred: bool = False, newest_only: bool = False):
        self.cfg = cfg
        self.model = model
        self._map_deferred = map_deferred
        #: external odometry by stamp; cleared with every reset of the session (the old timeline's poses)
        self.odometry = odometry or OdometryHistory()
        self.session = Session(model, self._stream_config(cfg), newest_only=newest_only, warn=warn,
                               on_reset=self.odometry.clear)
        self.builder = OutputBuilder(output_options(cfg), trajectory=lambda: self.streamer.trajectory("world"))
        self._warn = warn
        self._notice = notice or warn  # configuration remarks, not bad input
        self._frame_mismatch_told = False
        self._warmed: set = set()  # image sizes the model was warmed up for
        self._lookup_static = lookup_static
        self._camera_infos: Dict[str, CameraInfo] = {}  # camera ("" for one) -> its latest CameraInfo
        self._camera_info_readers: Dict[str, CameraInfoReader] = {}  # setup remarks said once per camera
        self.intrinsics_source = "none yet"
        self._frame_index = 0
        #: camera -> (base frame, optical frame, found): the last /tf_static lookup of its extrinsics
        self.static_lookups: Dict[str, Tuple[str, str, bool]] = {}

    @property
    def streamer(self) -> Streamer:
        return self.session.streamer

    @property
    def camera_info(self) -> Optional[CameraInfo]:
        """The (single) camera's latest CameraInfo."""
        return self._camera_infos.get("")

    def set_camera_info(self, camera: str, msg: Optional[CameraInfo]) -> None:
        """A camera's CameraInfo (checked against each of its images when used)."""
        if msg is None:
            self._camera_infos.pop(camera, None)
        else:
            self._camera_infos[camera] = msg

    def _stream_config(self, cfg: NodeConfig):
        return dataclasses.replace(stream_config(cfg), map_deferred=self._map_deferred)

    # ------------------------------------------------------------ state

    def reset(self, reason: str = "reset_called") -> None:
        """The one reset (~/reset, a clock jump): the session, and with it (on_reset) the
        external odometry history, as when the session finds time restarted."""
        self.session.reset(reason)

    def apply(self, cfg: NodeConfig) -> None:
        """Parameters changed at run time (already validated): thresholds reach the
        streaming core, switches and frames the builder."""
        new = self._stream_config(cfg)
        self.session.update(**{name: getattr(new, name) for name in Streamer.RUNTIME_FIELDS})
        self.builder.options = output_options(cfg)
        self.cfg = cfg

    @property
    def switched_on(self) -> FrozenSet[str]:
        return switched_on(self.builder.options)

    def map_cloud(self, stamp):
        """The world map as a PointCloud2 in the published world frame (None before the first answer)."""
        if self.streamer.anchor.T_world_stream is None:
            return None
        xyz, rgb = self.streamer.map_points("world")
        return map_cloud(xyz, rgb, stamp, self.cfg.world_frame)

    def path_message(self):
        """The path (nav_msgs/Path) when it grew or changed since the last call, else None."""
        return self.builder.path_message()

    def world_map_and_trajectory(self) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray, np.ndarray]:
        """(map xyz, map rgb, stamps, optical-frame c2w) in the published world frame."""
        xyz, rgb = self.streamer.map_points("world")
        stamps, c2w = self.streamer.trajectory("world")  # the world's one trajectory
        return xyz, rgb, stamps, c2w

    # ------------------------------------------------------------ frames

    def process(self, msg, compressed: bool, received: Optional[float] = None,
                wanted: Optional[FrozenSet[str]] = None) -> List[List[Tuple[Output, object]]]:
        """One image message -> the messages of each frame it answered (none when
        the frame was rejected or waits for its window). `wanted`: output names
        to build (default: every output switched on)."""
        frame = self.to_frame(msg, compressed, received)
        results = self.push_frames([frame]) if frame is not None else []
        return [self.build(r, wanted) for r in results]

    def flush(self) -> List[StreamResult]:
        """End of input: the results of the rig frames and frames still waiting."""
        return self._with_rig_sources(self.session.flush())

    def to_frame(self, msg, compressed: bool, received: Optional[float] = None, camera: str = "") -> Optional[Frame]:
        """An image message (of rig camera `camera`) as the streaming core's
        Frame, or None (reported through warn) when it cannot be used now.
        `received`: its arrival (seconds, a forward-only clock: the node's
        time.monotonic(), a bag's receive time), None when unknown."""
        stamp = stamp_to_sec(msg.header.stamp)
        try:
            rgb = compressed_to_rgb(msg) if compressed else image_to_rgb(msg)
        except ImageDecodeError as exc:
            self._warn(f"dropping image at t={stamp:.3f}: {exc}")
            return None
        height, width = rgb.shape[:2]
        if camera:  # a rig: each camera's frame id comes with its images
            optical_frame = msg.header.frame_id or f"{camera}_optical_frame"
        else:
            optical_frame = self.cfg.camera_frame or msg.header.frame_id or DEFAULT_OPTICAL_FRAME

        T_base_optical = None
        if self.cfg.base_frame:
            T_base_optical = self._lookup_static(self.cfg.base_frame, optical_frame)
            self.static_lookups[camera] = (self.cfg.base_frame, optical_frame, T_base_optical is not None)
            if T_base_optical is None:
                self._warn(f"waiting for /tf_static to connect {self.cfg.base_frame} and {optical_frame}; "
                           "frame skipped")
                return None
        c2w_external = self._external_pose(stamp, T_base_optical)
        if self.cfg.external_odometry_topic and c2w_external is None:
            return None

        self.warmup(width, height)
        frame = Frame(index=self._frame_index, stamp=stamp, image=np.ascontiguousarray(rgb),
                      intrinsics=self._intrinsics(camera, width, height), c2w_external=c2w_external,
                      T_base_optical=T_base_optical, camera=camera, received=received,
                      meta=FrameSource(msg.header.stamp, optical_frame, T_base_optical,
                                       0.0 if received is None else received, camera=camera))
        self._frame_index += 1
        return frame

    def calibration_lookup(self, camera: str) -> Optional[str]:
        """Where the rig camera's calibration was looked for on /tf_static and not
        found (None: it was found)."""
        if not self.cfg.base_frame:
            return "base_frame is not set, so /tf_static is not read (extrinsics estimated from the model)"
        if camera not in self.static_lookups:
            return f"no image of {camera} yet, so nothing looked up on /tf_static"
        base, optical, found = self.static_lookups[camera]
        return None if found else f"/tf_static has no transform {base} -> {optical} (its images are skipped)"

    def push_frames(self, frames: List[Frame]) -> List[StreamResult]:
        """Frames (of one camera, or of a rig's cameras) into the streaming
        session -> the results it answered."""
        return self._with_rig_sources(self.session.push_frames(frames))

    def _with_rig_sources(self, results: List[StreamResult]) -> List[StreamResult]:
        for r in results:
            r.meta.primary = r.primary
        self._attach_estimated_extrinsics(results)
        return results

    def _attach_estimated_extrinsics(self, results: List[StreamResult]) -> None:
        """Rig cameras without calibrated extrinsics: their poses relative to the
        primary camera, as estimated by the streaming core, go on TF beside the rig's."""
        estimate = self.streamer.rig.extrinsics() if self.streamer.rig is not None else {}
        if not estimate:
            return
        sources = {r.meta.camera: r.meta for r in results}
        reference = next(iter(estimate.values())).reference
        for r in results:
            if r.meta.primary and r.meta.camera == reference:
                # named as estimates: a calibrated camera's own frame stays the robot's
                r.meta.estimated_extrinsics = tuple(
                    (f"{sources[camera].optical_frame}_estimated", e.T_reference_camera)
                    for camera, e in estimate.items() if camera in sources and sources[camera].T_base_optical is None)

    def build(self, result: StreamResult, wanted: Optional[FrozenSet[str]] = None) -> List[Tuple[Output, object]]:
        """Messages of the wanted outputs for one result. No map work: with the
        map deferred, the caller gives the results to `insert_map` once their
        messages are out."""
        return self.builder.build(result, self.switched_on if wanted is None else wanted)

    def messages(self, result: StreamResult, wanted: FrozenSet[str]) -> Iterator[Tuple[Output, object]]:
        """`build`, one message at a time (the live node publishes each as it comes)."""
        return self.builder.messages(result, wanted)

    def insert_map(self, results: List[StreamResult]) -> None:
        """The deferred map gains the points of the results that feed it, in one
        insert (a backlog coalesced; results from before a reset are ignored)."""
        self.streamer.insert_map([r for r in results if r.in_map])

    def warmup(self, width: int, height: int) -> float:
        """Let the model compile / capture its fixed shapes for width x height
        frames (once per size). Returns the seconds it took (0 if nothing to do)."""
        warm = getattr(self.model, "warmup", None)  # optional: only compiled models have one
        if warm is None or (width, height) in self._warmed:
            return 0.0
        self._warmed.add((width, height))
        return float(warm(width, height, self.cfg.window_size) or 0.0)

    def _external_pose(self, stamp: float, T_base_optical: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """c2w of the optical frame from the external odometry nearest `stamp`."""
        if not self.cfg.external_odometry_topic:
            return None
        found = self.odometry.nearest(stamp, self.cfg.external_odometry_max_dt)
        if found is None:
            self._warn(f"no external odometry within {self.cfg.external_odometry_max_dt} s of t={stamp:.3f}; "
                       "frame skipped")
            return None
        T_world_base, odom_frame = found
        if odom_frame and odom_frame != self.cfg.world_frame and not self._frame_mismatch_told:
            # poses are in the odometry's world: labelling them with another frame is wrong
            self._frame_mismatch_told = True
            self._notice(f"external odometry is in frame {odom_frame!r} but world_frame is "
                         f"{self.cfg.world_frame!r}: set world_frame:={odom_frame}")
        return T_world_base @ (T_base_optical if T_base_optical is not None else T_BODY_OPTICAL)

    def camera_info_reader(self, camera: str) -> CameraInfoReader:
        """The camera's CameraInfo reader (K, or P for rectified images; remarks said once)."""
        if camera not in self._camera_info_readers:
            self._camera_info_readers[camera] = CameraInfoReader(self.cfg.input_rectified)
        return self._camera_info_readers[camera]

    def _intrinsics(self, camera: str, width: int, height: int) -> Optional[np.ndarray]:
        info = self._camera_infos.get(camera)
        intrinsics = None
        if info is not None and self.cfg.use_camera_info:
            try:
                intrinsics, notes = self.camera_info_reader(camera).read(info, width, height)
            except CameraInfoError as exc:
                self._warn(f"ignoring camera_info, estimating intrinsics instead: {exc}")
            else:
                for note in notes:
                    self._notice(note)
        self.intrinsics_source = "camera_info" if intrinsics is not None else "estimated"
        return intrinsics
