"""`da3_ros replay BAG`: publish a rosbag2 (sqlite3 or MCAP) over DDS with /clock.

Like `ros2 bag play --clock`, for machines without rosbag2: messages go out
with their recorded timing (bag receive times, scaled by --rate) as the raw CDR
bytes from the bag, so nothing is deserialised; rclpy only needs each type's
class for the publisher. /clock carries the bag's time, published at
--clock-hz between messages and at every message.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from da3_ros.io.bags import BagError, BagMessage, is_bag_path, iter_messages, list_topics, open_reader

PROG = "da3_ros replay"
TF_STATIC = "/tf_static"


# ---------------------------------------------------------------- arguments


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("bag", help="rosbag2 directory (with metadata.yaml), or a .mcap / .db3 file")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (2 = twice as fast)")
    p.add_argument("--loop", action="store_true", help="start again from the beginning at the end (Ctrl-C stops)")
    p.add_argument("--topics", nargs="+", metavar="T", help="play only these topics (names as recorded)")
    p.add_argument("--remap", nargs="+", default=[], metavar="OLD:=NEW", help="publish topic OLD as NEW")
    p.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                   help="skip the first S seconds of the bag (latched topics in them are still sent)")
    p.add_argument("--delay", type=float, default=0.0, metavar="S",
                   help="wait S seconds after creating the publishers, so subscribers can be discovered")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate between messages")
    args = p.parse_args(list(argv))
    if not args.rate > 0:
        p.error("--rate must be > 0")
    if not args.clock_hz > 0:
        p.error("--clock-hz must be > 0")
    if args.start_offset < 0 or args.delay < 0:
        p.error("--start-offset and --delay must be >= 0")
    try:
        args.remap = parse_remaps(args.remap)
    except ValueError as exc:
        p.error(str(exc))
    return args


def parse_remaps(rules: Iterable[str]) -> Dict[str, str]:
    """["/a:=/b", ...] -> {"/a": "/b"}."""
    remaps = {}
    for rule in rules:
        old, sep, new = rule.partition(":=")
        if not sep or not old or not new:
            raise ValueError(f"--remap expects OLD:=NEW, got {rule!r}")
        remaps[old] = new
    return remaps


# ---------------------------------------------------------------- message types


def message_class(msgtype: str):
    """"sensor_msgs/msg/Image" -> the rclpy message class (ImportError/AttributeError if absent)."""
    package, kind, name = msgtype.split("/")  # ValueError for a malformed name
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def resolve_classes(msgtypes: Iterable[str]) -> Tuple[Dict[str, type], List[str]]:
    """Classes for the types that import here, and the names of those that do not."""
    found, missing = {}, []
    for msgtype in sorted(set(msgtypes)):
        try:
            found[msgtype] = message_class(msgtype)
        except (ImportError, AttributeError, ValueError):
            missing.append(msgtype)
    return found, missing


# ---------------------------------------------------------------- QoS


def is_latched(topic: str, connections) -> bool:
    """/tf_static, or any topic the recorder saw offered transient local (map/points)."""
    if topic == TF_STATIC:
        return True
    for conn in connections:
        if conn.topic != topic:
            continue
        for qos in getattr(conn.ext, "offered_qos_profiles", None) or []:
            if getattr(qos.durability, "name", "") == "TRANSIENT_LOCAL":
                return True
    return False


def qos_for(latched: bool):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    # reliable: best-effort subscribers still match a reliable publisher, not the reverse
    if latched:  # late joiners (a node started after the bag) still get the static tree
        return QoSProfile(depth=100, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    return QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


# ---------------------------------------------------------------- playback


@dataclass
class Stats:
    published: int = 0
    passes: int = 0
    timed_in_last_pass: int = 0  # messages after the start offset (0: nothing to loop over)


class Player:
    """Publishes one bag's messages on a node; `play_once` is one pass through the bag."""

    def __init__(self, node, reader, args: argparse.Namespace):
        self.node = node
        self.reader = reader
        self.rate = args.rate
        self.start_offset_ns = int(round(args.start_offset * 1e9))
        self.clock_period = 1.0 / args.clock_hz
        self.stats = Stats()
        self.publishers: Dict[str, object] = {}  # recorded topic -> publisher
        self.latched: set = set()  # recorded topics published transient local
        self.clock_pub = None
        self._create_publishers(args)
        if not args.no_clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = node.create_publisher(Clock, "/clock", qos_for(False))

    def _create_publishers(self, args: argparse.Namespace) -> None:
        topics = list_topics(self.reader)
        if args.topics:
            unknown = sorted(set(args.topics) - {t.name for t in topics})
            if unknown:
                self.node.get_logger().warning(f"topics not in the bag: {', '.join(unknown)}")
            topics = [t for t in topics if t.name in set(args.topics)]
        classes, missing = resolve_classes(t.msgtype for t in topics)
        if missing:
            self.node.get_logger().warning(f"skipping topics of types that cannot be imported here: "
                                           f"{', '.join(missing)}")
        for t in topics:
            if t.msgtype not in classes or t.name in self.publishers:
                continue  # one type per topic: DDS cannot carry two on one name
            name = args.remap.get(t.name, t.name)
            latched = is_latched(t.name, self.reader.connections)
            self.publishers[t.name] = self.node.create_publisher(classes[t.msgtype], name, qos_for(latched))
            if latched:
                self.latched.add(t.name)

    @property
    def topics(self) -> List[str]:
        return sorted(self.publishers)

    def play_once(self, ok) -> bool:
        """One pass; False when stopped (ok() went false) before the end."""
        start_ns = self.reader.start_time + self.start_offset_ns
        wall0: Optional[float] = None
        self.stats.timed_in_last_pass = 0
        for msg in iter_messages(self.reader, self.topics):
            if msg.timestamp_ns < start_ns:
                if msg.topic in self.latched:
                    self._publish(msg)  # state, not an event: late joiners expect it
                continue
            if wall0 is None:
                wall0 = time.monotonic()
            due = wall0 + (msg.timestamp_ns - start_ns) * 1e-9 / self.rate
            if not self._wait_until(due, wall0, start_ns, ok):
                return False
            self._publish_clock(msg.timestamp_ns)
            self._publish(msg)
            self.stats.timed_in_last_pass += 1
        self.stats.passes += 1
        return True

    def _wait_until(self, due: float, wall0: float, start_ns: int, ok) -> bool:
        """Sleep until `due` (monotonic), publishing /clock every clock period meanwhile."""
        while True:
            if not ok():
                return False
            now = time.monotonic()
            if now >= due:
                return True
            time.sleep(min(due - now, self.clock_period))
            now = min(time.monotonic(), due)
            if now < due:  # the message itself brings the clock to its own time
                self._publish_clock(start_ns + int((now - wall0) * self.rate * 1e9))

    def _publish(self, msg: BagMessage) -> None:
        # raw CDR as recorded: rclpy publishes bytes without deserialising them
        self.publishers[msg.topic].publish(bytes(msg.rawdata))
        self.stats.published += 1

    def _publish_clock(self, ns: int) -> None:
        if self.clock_pub is None:
            return
        from rosgraph_msgs.msg import Clock

        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(int(ns), 1_000_000_000)
        self.clock_pub.publish(clock)


def replay(args: argparse.Namespace) -> int:
    with open_reader(args.bag) as reader:  # a broken bag fails here, before DDS starts
        return play(reader, args)


def play(reader, args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import ExternalShutdownException

    context = Context()
    rclpy.init(args=[], context=context)
    node = None
    try:
        node = rclpy.create_node("da3_replay", context=context)
        player = Player(node, reader, args)
        if not player.publishers:
            print(f"{PROG}: nothing to play in {args.bag}", file=sys.stderr)
            return 1
        count = sum(t.message_count for t in list_topics(reader) if t.name in player.publishers)
        print(f"playing {args.bag}: {count} messages on {len(player.publishers)} topics "
              f"({', '.join(player.topics)}), rate {args.rate:g}{', looping' if args.loop else ''}", flush=True)
        if args.delay:
            time.sleep(args.delay)
        while player.play_once(context.ok) and args.loop and player.stats.timed_in_last_pass:
            pass  # (an offset past the bag's end leaves nothing to loop over)
        print(f"done: published {player.stats.published} messages in {player.stats.passes} pass(es)", flush=True)
    except (KeyboardInterrupt, ExternalShutdownException):
        print("interrupted", flush=True)
    finally:
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not is_bag_path(args.bag):
        print(f"{PROG}: error: {args.bag!r} is not a rosbag2 (a directory with metadata.yaml, "
              f"or a .mcap/.db3 file)", file=sys.stderr)
        return 2
    try:
        return replay(args)
    except BagError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
