"""`da3_ros process-bag IN OUT`: the node's pipeline on every image of a bag, no DDS.

Input messages are read in bag order and deserialised into rclpy message
objects: CameraInfo and /tf_static feed the FramePipeline the way the node's
subscriptions do, each image is processed (none dropped: there is no one-slot
buffer offline). Every output message is written to OUT under the node's topic
names, with the SOURCE IMAGE's stamp as the bag timestamp, so the output bag
lines up with the input (and replays in step with it). At the end the world map
(`map/points`) is written once; the input's /tf_static is copied.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from da3_ros.io.bags import (CAMERA_INFO, COMPRESSED_IMAGE, IMAGE_TYPES, STORAGES, BagError, add_topic,
                             camera_image_topics, latched_qos,
                             get_typestore, iter_messages, list_topics, open_reader, open_writer)
from da3_ros.usage import ArgumentParser

PROG = "da3_ros process-bag"
TF_STATIC = "/tf_static"
KEYFRAME_TYPE = "da3_ros/msg/Keyframe"
PROGRESS_PERIOD_S = 2.0


class UsageError(ValueError):
    """A request the bag or the parameters cannot satisfy (exit code 2)."""


class ModelLoadError(RuntimeError):
    """The model source could not be loaded (exit code 2: a user's model spec)."""


# ---------------------------------------------------------------- parameters


def parse_parameter(assignment: str) -> Tuple[str, object]:
    """"name:=value" -> (name, value typed like the setting's default)."""
    from da3_ros.stream.settings import parse_value

    name, sep, text = assignment.partition(":=")
    if not sep:
        raise UsageError(f"-p expects name:=value, got {assignment!r}")
    try:
        return name, parse_value(name, text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def config_from(assignments: Sequence[str], model: Optional[str] = None):
    from da3_ros.ros.params import default_config

    overrides = dict(parse_parameter(a) for a in assignments)
    if model:
        overrides["model"] = model
    try:
        return default_config(**overrides)
    except ValueError as exc:  # values that do not fit together
        raise UsageError(str(exc)) from None


# ---------------------------------------------------------------- topics and types


def select_image_topic(topics, wanted: Optional[str]) -> Tuple[str, bool]:
    """(image topic, compressed?): the one asked for, or the bag's only image topic."""
    images = [t for t in topics if t.msgtype in IMAGE_TYPES]
    if wanted is not None:
        match = [t for t in images if t.name == wanted]
        if not match:
            raise UsageError(f"{wanted!r} is not an image topic of the bag; image topics: {_names(images)}")
        return wanted, match[0].msgtype == COMPRESSED_IMAGE
    if len(images) != 1:
        what = "no image topics" if not images else f"several image topics: {_names(images)}"
        raise UsageError(f"the bag has {what}; choose one with --image-topic")
    return images[0].name, images[0].msgtype == COMPRESSED_IMAGE


def select_camera_info_topic(topics, image_topic: str, wanted: Optional[str]) -> Optional[str]:
    """The CameraInfo asked for; else the image's sibling camera_info (a driver's
    layout: .../image_raw[/compressed] beside .../camera_info); else the only one."""
    infos = [t.name for t in topics if t.msgtype == CAMERA_INFO]
    if wanted is not None:
        if wanted not in infos:
            raise UsageError(f"{wanted!r} is not a CameraInfo topic of the bag; CameraInfo topics: "
                             f"{', '.join(infos) or 'none'}")
        return wanted
    base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    sibling = base.rsplit("/", 1)[0] + "/camera_info"
    if sibling in infos:
        return sibling
    return infos[0] if len(infos) == 1 else None


def _names(topics) -> str:
    return ", ".join(f"{t.name} ({t.msgtype})" for t in topics) or "none"


def msgtype_of(msg) -> str:
    """rclpy message object -> "pkg/msg/Name" (from its generated module, e.g. sensor_msgs.msg._image)."""
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def output_topic(namespace: str, name: str) -> str:
    """The node's topic under `namespace`: relative names get it, absolute ones (/tf) keep theirs."""
    if name.startswith("/"):
        return name
    return f"{namespace.rstrip('/')}/{name}" if namespace.strip("/") else f"/{name}"


def keyframe_definition() -> str:
    """Text of Keyframe.msg: from the installed share directory, else from the source tree."""
    candidates: List[pathlib.Path] = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(pathlib.Path(get_package_share_directory("da3_ros")) / "msg" / "Keyframe.msg")
    except Exception:  # noqa: BLE001 - not installed / no ament index: use the source tree
        pass
    candidates.append(pathlib.Path(__file__).resolve().parents[2] / "msg" / "Keyframe.msg")
    for path in candidates:
        if path.is_file():
            return path.read_text()
    raise BagError(f"cannot find Keyframe.msg (looked in {', '.join(map(str, candidates))})")


def output_typestore():
    """rosbags typestore of this ROS distro (message definitions for MCAP), with da3_ros/msg/Keyframe."""
    from rosbags.typesys import get_types_from_msg

    try:
        store = get_typestore(os.environ.get("ROS_DISTRO") or "kilted")
    except BagError:  # a distro newer than this rosbags knows
        store = get_typestore("jazzy")
    store.register(get_types_from_msg(keyframe_definition(), KEYFRAME_TYPE))
    return store


# ---------------------------------------------------------------- output bag


class OutputBag:
    """Topics are added on first use, typed from the message itself."""

    def __init__(self, writer, typestore):
        self.writer = writer
        self.typestore = typestore
        self.connections: Dict[str, object] = {}
        self.counts: Counter = Counter()

    def write(self, topic: str, msg, timestamp_ns: int, latched: bool = False) -> None:
        from rclpy.serialization import serialize_message

        self.write_raw(topic, msgtype_of(msg), serialize_message(msg), timestamp_ns, latched)

    def write_raw(self, topic: str, msgtype: str, rawdata: bytes, timestamp_ns: int, latched: bool = False) -> None:
        conn = self.connections.get(topic)
        if conn is None:
            conn = add_topic(self.writer, topic, msgtype, self.typestore, qos=[latched_qos()] if latched else [])
            self.connections[topic] = conn
        self.writer.write(conn, int(timestamp_ns), bytes(rawdata))
        self.counts[topic] += 1


# ---------------------------------------------------------------- processing


class Progress:
    """A line on stderr every few seconds."""

    def __init__(self, total: int, enabled: bool = True):
        self.total = total
        self.enabled = enabled
        self._last = time.monotonic()

    def update(self, frames: int, answered: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.enabled and (force or now - self._last >= PROGRESS_PERIOD_S):
            self._last = now
            print(f"{PROG}: {frames}/{self.total} frames, {answered} answered", file=sys.stderr, flush=True)


def load_model(cfg):
    """The model `cfg.model` names; a loader failure is one ModelLoadError line."""
    from da3_ros.ros.params import model_settings
    from da3_ros.runtime.models import make_window_model

    try:
        return make_window_model(model_settings(cfg))
    except Exception as exc:  # noqa: BLE001 - any loader failure is one line for the user
        raise ModelLoadError(f"cannot load model {cfg.model!r}: {exc}") from exc


class BagRun:
    """One process-bag run: the input's messages through a FramePipeline, every
    output switched on written under the node's topic names."""

    def __init__(self, pipeline, out: OutputBag, namespace: str, warn):
        self.pipeline, self.out, self.namespace, self.warn = pipeline, out, namespace, warn
        self.frames = self.answered = 0
        self.last_stamp_ns: Optional[int] = None
        self._path_due_ns: Optional[int] = None  # bag time of the next path message

    def take(self, msg, compressed: bool, camera: str, received_ns: int) -> None:
        """One image message of `camera` ("" for one camera) that the recorder
        received at bag time `received_ns`: answered (with its rig frame, once
        complete) and written."""
        frame = self.pipeline.to_frame(msg, compressed, received_ns * 1e-9, camera)
        if frame is not None:
            self.write_results(self.pipeline.push_frames([frame]))

    def write_results(self, results) -> None:
        from da3_ros.ros.conversions import stamp_to_ns

        for result in results:
            self.answered += 1
            camera = result.meta.camera
            for output, msg in self.pipeline.build(result):
                # the source image's stamp (/tf carries it per transform)
                header = msg.transforms[0].header if output.name == "tf" else msg.header
                self.last_stamp_ns = stamp_to_ns(header.stamp)
                self.out.write(output_topic(self.namespace, output.topic_for(camera)), msg, self.last_stamp_ns)
        if self.last_stamp_ns is not None and (self._path_due_ns is None or self.last_stamp_ns >= self._path_due_ns):
            self.write_path()

    def write_path(self) -> None:
        """The path as the node's timer publishes it: every `path_publish_period`
        (of bag time here) while it grows, and once more at the end."""
        from da3_ros.ros.conversions import stamp_to_ns
        from da3_ros.ros.outputs import OUTPUTS_BY_NAME

        output = OUTPUTS_BY_NAME["path"]
        if output.name not in self.pipeline.switched_on:
            return
        path = self.pipeline.path_message()
        if path is not None:
            stamp_ns = stamp_to_ns(path.header.stamp)
            self.out.write(output_topic(self.namespace, output.topic), path, stamp_ns)
            self._path_due_ns = stamp_ns + int(round(self.pipeline.cfg.path_publish_period * 1e9))

    def decode(self, m, cls):
        from rclpy.serialization import deserialize_message

        try:
            return deserialize_message(bytes(m.rawdata), cls)
        except Exception as exc:  # noqa: BLE001 - a corrupt record must not end the run
            self.warn(f"undecodable {m.msgtype} on {m.topic} at bag time {m.timestamp_ns} ns: {exc}")
            return None

    def read(self, reader, tree, image_of: Dict[str, str], info_of: Dict[str, str], compressed: bool,
             meter: "Progress") -> None:
        """Every message of the input in bag order: /tf_static and CameraInfo feed
        the pipeline as the node's subscriptions do; images are answered and
        written; at the end the frames still waiting, then the map."""
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from tf2_msgs.msg import TFMessage

        image_cls = CompressedImage if compressed else Image
        for m in iter_messages(reader, list(image_of) + [TF_STATIC] + list(info_of)):
            if m.topic == TF_STATIC:
                tf = self.decode(m, TFMessage)
                if tf is not None:
                    tree.add(tf)
                    self.out.write_raw(TF_STATIC, m.msgtype, m.rawdata, m.timestamp_ns, latched=True)
            elif m.topic in info_of:
                info = self.decode(m, CameraInfo)
                if info is not None:
                    self.pipeline.set_camera_info(info_of[m.topic], info)
            else:
                self.frames += 1
                msg = self.decode(m, image_cls)
                if msg is not None:
                    self.take(msg, compressed, image_of[m.topic], m.timestamp_ns)
                meter.update(self.frames, self.answered)
        self.write_results(self.pipeline.flush())
        self.write_path()
        self.write_map()
        meter.update(self.frames, self.answered, force=True)

    def write_map(self) -> None:
        from da3_ros.ros.conversions import ns_to_stamp
        from da3_ros.ros.outputs import OUTPUTS_BY_NAME

        output = OUTPUTS_BY_NAME["map"]
        if output.name not in self.pipeline.switched_on or self.last_stamp_ns is None:
            return
        cloud = self.pipeline.map_cloud(ns_to_stamp(self.last_stamp_ns))
        if cloud is not None:
            self.out.write(output_topic(self.namespace, output.topic), cloud, self.last_stamp_ns, latched=True)


def rig_image_topics(topics, cameras: Sequence[str], wanted: Sequence[str]) -> List[str]:
    """Each rig camera's image topic: the ones asked for (in camera order), else the
    bag's image topic with the camera's name as a namespace (/rig/<camera>/image_raw)."""
    images = [t for t in topics if t.msgtype in IMAGE_TYPES]
    if wanted:
        if len(wanted) != len(cameras):
            raise UsageError(f"{len(wanted)} image topics for {len(cameras)} cameras ({', '.join(cameras)})")
        return [select_image_topic(topics, w)[0] for w in wanted]
    try:
        return camera_image_topics([t.name for t in images], cameras)
    except BagError as exc:
        raise UsageError(f"{exc} (--image-topic)") from None


def input_topics(topics, cfg, image_topic: Optional[str], camera_info_topic: Optional[str],
                 image_topics: Sequence[str]) -> Tuple[Dict[str, str], Dict[str, str], bool]:
    """({image topic: camera}, {CameraInfo topic: camera}, compressed?) of a bag
    ("" the camera of a single-camera bag)."""
    if cfg.cameras:
        image_of = dict(zip(rig_image_topics(topics, cfg.cameras, image_topics), cfg.cameras))
    else:
        image_of = {select_image_topic(topics, image_topic)[0]: ""}
    compressed = {t.msgtype for t in topics if t.name in image_of} == {COMPRESSED_IMAGE}
    info_of = {}
    if cfg.use_camera_info:
        for topic, camera in image_of.items():
            info = select_camera_info_topic(topics, topic, None if cfg.cameras else camera_info_topic)
            if info is not None:
                info_of[info] = camera
    return image_of, info_of, compressed


def run_process_bag(in_path, out_path, cfg, model=None, image_topic: Optional[str] = None,
                    camera_info_topic: Optional[str] = None, storage: str = "mcap", namespace: str = "/da3",
                    progress: bool = True, image_topics: Sequence[str] = ()) -> dict:
    """Process IN into a new bag OUT (see the module docstring) -> summary dict.
    With the `cameras` parameter, a rig bag: one image topic per camera (named in
    `image_topics`, or found by camera name), grouped into rig frames by the
    streaming session as in the node (offline every rig frame is answered).

    model: a WindowModel to use instead of loading cfg.model (tests)."""
    from da3_ros.ros.frame_pipeline import FramePipeline
    from da3_ros.ros.frames import StaticTree

    if storage not in STORAGES:
        raise UsageError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
    if os.path.exists(out_path):  # checked before a model loads for minutes
        raise UsageError(f"output {os.fspath(out_path)!r} exists; rosbag2 writes a new directory")
    started = time.monotonic()
    bad: List[str] = []

    def warn(text: str) -> None:
        bad.append(text)
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)

    with open_reader(in_path) as reader:
        topics = list_topics(reader)
        image_of, info_of, compressed = input_topics(topics, cfg, image_topic, camera_info_topic, image_topics)
        tree = StaticTree()
        pipeline = FramePipeline(model if model is not None else load_model(cfg), cfg, warn, tree.lookup)
        meter = Progress(sum(t.message_count for t in topics if t.name in image_of), progress)
        with open_writer(out_path, storage=storage) as writer:
            run = BagRun(pipeline, OutputBag(writer, output_typestore()), namespace, warn)
            run.read(reader, tree, image_of, info_of, compressed, meter)
    summary = {
        "input": os.fspath(in_path), "output": os.fspath(out_path), "storage": storage,
        "image_topic": next(iter(image_of)) if not cfg.cameras else None, "image_topics": image_of,
        "camera_info_topic": next(iter(info_of), None) if not cfg.cameras else None, "frames_in": run.frames,
        "answered": run.answered, "bad": len(bad), "resets": pipeline.streamer.n_resets,
        "dropped": {k: v for k, v in pipeline.streamer.counts.items() if k.endswith(("_outlier", "_stamp"))},
        "messages": dict(run.out.counts), "seconds": time.monotonic() - started,
    }
    if cfg.cameras:
        summary["rig"] = pipeline.session.rig_summary()
    return summary


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])  # one-line errors, exit 2
    p.add_argument("input", help="input rosbag2 (directory with metadata.yaml, or a .mcap / .db3 file)")
    p.add_argument("output", help="output bag directory (must not exist)")
    p.add_argument("--model", help="model source (hub id, directory, random:<variant>, oracle:<dir>, ...); "
                                   "default: the node's `model` parameter")
    p.add_argument("--image-topic", action="append", default=[],
                   help="image topic (sensor_msgs/Image or CompressedImage); default: the only one. With "
                        "-p cameras:=[a,b]: one per camera, in that order (default: the topic named by each camera)")
    p.add_argument("--camera-info-topic", help="CameraInfo topic; default: the image's sibling camera_info")
    p.add_argument("--storage", choices=STORAGES, default="mcap", help="output bag storage")
    p.add_argument("--namespace", default="/da3", help="namespace of the node's relative output topics")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                   help="a da3_node parameter (repeatable), e.g. -p window_size:=8 -p publish_points:=false")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    return p.parse_args(list(argv))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = config_from(args.param, args.model)
        topics = args.image_topic
        if len(topics) > 1 and not cfg.cameras:
            raise UsageError("several --image-topic need -p cameras:=[...] (one camera name per topic)")
        summary = run_process_bag(args.input, args.output, cfg, image_topic=topics[0] if topics and not cfg.cameras else None,
                                  image_topics=topics if cfg.cameras else (),
                                  camera_info_topic=args.camera_info_topic, storage=args.storage,
                                  namespace=args.namespace, progress=not args.quiet)
    except (BagError, UsageError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except ModelLoadError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {args.output} is incomplete", file=sys.stderr)
        return 130
    print(f"{PROG}: {summary['frames_in']} frames in, {summary['answered']} answered, {summary['bad']} bad, "
          f"{sum(summary['messages'].values())} messages written to {summary['output']} "
          f"({summary['storage']}, {summary['seconds']:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
