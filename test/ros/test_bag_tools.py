"""`da3_ros replay` and `da3_ros process-bag` on real bags (rosbags, MCAP and
sqlite3) and real DDS.

replay: every image arrives byte for byte with its stamp, on best-effort and
reliable subscribers, with /clock from the bag's receive times, /tf_static
latched for late joiners and --loop starting over. process-bag: with the exact
oracle model the output bag holds the ground truth, at the input stamps.
"""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage

from da3_ros.io import bags
from da3_ros.ros.conversions import stamp_to_ns
from da3_ros.synthetic.sequence import make_sequence
from node_harness import read_output, spin_until, stamp_ns

TS = bags.get_typestore("kilted")
CAMERA = "/cam/image"
CAMERA_INFO = "/cam/camera_info"
OPTICAL = "cam_optical_frame"
N_REPLAY = 6
RECEIVE_DELAY_NS = 3_000_000  # a recorder receives each message a little after its stamp


@pytest.fixture(scope="module")
def short_sequence():
    return make_sequence("orbit", n_frames=N_REPLAY, width=32, height=24, seed=1)


def static_tf_msg(t: float):
    """/tf_static: base_link -> the camera's optical frame (rosbags message)."""
    T = TS.types
    transform = T["geometry_msgs/msg/TransformStamped"](
        header=bags.make_header(TS, t, "base_link"), child_frame_id=OPTICAL,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=0.1, y=0.0, z=0.2),
            rotation=T["geometry_msgs/msg/Quaternion"](x=-0.5, y=0.5, z=-0.5, w=0.5)))
    return T["tf2_msgs/msg/TFMessage"](transforms=[transform])


def write_camera_bag(path, seq, storage, compressed=False, extra_unknown_type=False, corrupt=()):
    """A bag as a camera driver + recorder would write it: /tf_static first, then
    CameraInfo and an image per frame, received a few ms after their stamps.
    Returns the image messages as (receive ns, raw CDR) in order."""
    images = []
    with bags.open_writer(path, storage=storage) as writer:
        tf = bags.add_topic(writer, "/tf_static", "tf2_msgs/msg/TFMessage", TS, qos=[bags.latched_qos()])
        img = bags.add_topic(writer, CAMERA + ("/compressed" if compressed else ""),
                             bags.COMPRESSED_IMAGE if compressed else bags.IMAGE, TS)
        info = bags.add_topic(writer, CAMERA_INFO, bags.CAMERA_INFO, TS)
        t0 = float(seq.stamps[0])
        writer.write(tf, stamp_ns(t0) - 10_000_000, bags.serialize(TS, static_tf_msg(t0)))
        if extra_unknown_type:  # a type this machine has no Python class for
            from rosbags.typesys import get_types_from_msg

            store = bags.get_typestore("kilted")
            store.register(get_types_from_msg("int32 value", "not_a_package/msg/Thing"))
            thing = bags.add_topic(writer, "/thing", "not_a_package/msg/Thing", store)
            writer.write(thing, stamp_ns(t0), bags.serialize(store, store.types["not_a_package/msg/Thing"](value=1)))
        for i, t in enumerate(seq.stamps):
            t = float(t)
            received = stamp_ns(t) + RECEIVE_DELAY_NS
            writer.write(info, received - 1, bags.serialize(TS, bags.camera_info_msg(
                TS, seq.intrinsics, seq.width, seq.height, t, frame_id=OPTICAL)))
            msg = (bags.compressed_image_msg(TS, seq.images[i], t, format="png", frame_id=OPTICAL) if compressed
                   else bags.image_msg(TS, seq.images[i], "rgb8", t, frame_id=OPTICAL))
            raw = bags.serialize(TS, msg)
            if i in corrupt:  # a truncated record, as a crashed recorder leaves one
                raw = raw[:20]
            writer.write(img, received, raw)
            images.append((received, raw))
    return images


# ---------------------------------------------------------------- replay


class Listener:
    """Subscribes to what the replayed camera bag publishes; keeps it in arrival order."""

    def __init__(self, node):
        self.node = node
        self.raw_best_effort, self.reliable, self.infos, self.clock, self.tf_static = [], [], [], [], []
        best_effort = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, CAMERA, self.raw_best_effort.append, best_effort, raw=True)
        node.create_subscription(Image, CAMERA, self.reliable.append, reliable)
        node.create_subscription(CameraInfo, "/remapped/camera_info", self.infos.append, reliable)
        node.create_subscription(Clock, "/clock", lambda m: self.clock.append(stamp_to_ns(m.clock)),
                                 QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))

    def stamps(self):
        return [stamp_to_ns(m.header.stamp) for m in list(self.reliable)]

    def join_tf_static_late(self):
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(TFMessage, "/tf_static", self.tf_static.append, latched)


def run_start(received, expected) -> int:
    """Where `expected` first appears in `received` as one contiguous run (one whole
    pass, in order), or -1."""
    received, n = list(received), len(expected)
    return next((i for i in range(len(received) - n + 1) if received[i:i + n] == expected), -1)


def contains_run(received, expected) -> bool:
    return run_start(received, expected) >= 0


def replay_cmd(*args):
    return ["-m", "da3_ros.cli", "replay", *map(str, args)]


def test_replay_stops_on_sigint_even_when_started_with_it_ignored(tmp_path, short_sequence):
    """A shell script's background job starts with SIGINT ignored (here: `trap '' INT`);
    launch and harnesses stop nodes with SIGINT, so the entry point takes it back."""
    import signal
    import subprocess
    import sys
    import time

    write_camera_bag(tmp_path / "camera", short_sequence, "mcap")
    cmd = f"trap '' INT; exec {sys.executable} -m da3_ros.cli replay {tmp_path / 'camera'} --loop --rate 5"
    proc = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline and not any("playing" in ln for ln in lines):
            lines.append(proc.stdout.readline())
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + out
    assert proc.returncode == 0 and "interrupted" in out, out


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_round_trip(tmp_path, storage, short_sequence, ros_context, make_node, child_process):
    seq = short_sequence
    bag = tmp_path / "camera"
    images = write_camera_bag(bag, seq, storage, extra_unknown_type=True)
    listener = Listener(make_node("replay_listener"))

    def spin(predicate, timeout):  # one thread: callbacks in arrival order (/clock order is checked)
        return spin_until(listener.node, predicate, timeout, ros_context)

    # 30 Hz recorded, played at 5x; --loop keeps the publisher alive for the late joiner
    child = child_process(replay_cmd(bag, "--rate", 5, "--loop", "--delay", 1.0, "--clock-hz", 1000,
                                     "--remap", f"{CAMERA_INFO}:=/remapped/camera_info"))
    assert child.wait_for_line("playing", 20.0), child.output()
    expected = [stamp_ns(t) for t in seq.stamps]
    assert spin(lambda: contains_run(listener.stamps(), expected + expected[:1]), 20.0), \
        f"{listener.stamps()}\n{child.output()}"
    listener.join_tf_static_late()
    assert spin(lambda: listener.tf_static, 5.0), "late joiner got no /tf_static"
    assert spin(lambda: contains_run(listener.raw_best_effort, [raw for _, raw in images]), 5.0)
    output = child.stop()
    assert child.proc.returncode == 0, output
    assert "interrupted" in output and "Traceback" not in output, output
    assert output.count("not_a_package/msg/Thing") == 1, f"one warning for the unknown type:\n{output}"

    # one whole pass, in order, byte for byte, on both QoS, then the first frame again
    # (--loop); discovery may cost the very first messages, so any whole pass counts
    assert contains_run(listener.stamps(), expected + expected[:1])
    assert contains_run(listener.raw_best_effort, [raw for _, raw in images])
    start = run_start(listener.stamps(), expected)
    for i, msg in enumerate(listener.reliable[start:start + N_REPLAY]):
        assert msg.header.frame_id == OPTICAL
        np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(seq.images[i].shape),
                                      seq.images[i])
    assert len(listener.infos) >= N_REPLAY, "remapped camera_info missing"

    (tf_msg,) = listener.tf_static[:1]
    assert tf_msg.transforms[0].child_frame_id == OPTICAL and tf_msg.transforms[0].header.frame_id == "base_link"

    # /clock: bag time, only going back where the bag loops, ticking between messages.
    # (/clock is a latest-value stream, KEEP_LAST like ros2 bag play's: under load a
    # subscriber may miss some samples, so most, not all, message times are required)
    receive_times = [received for received, _ in images]
    clock = list(listener.clock)
    bag_start = receive_times[0] - RECEIVE_DELAY_NS - 10_000_000  # the /tf_static record
    assert clock and all(bag_start <= c <= receive_times[-1] for c in clock)
    # going back happens only at a restart, to the bag's first message
    backwards = [later for earlier, later in zip(clock, clock[1:]) if later < earlier]
    assert backwards and all(c < receive_times[0] for c in backwards), backwards
    assert len(set(receive_times) & set(clock)) >= len(receive_times) // 2, "message times missing on /clock"
    assert set(clock) - set(receive_times) - {bag_start}, "no /clock ticks between messages"


@pytest.mark.parametrize("extra,published", [
    ([], N_REPLAY + 1),
    # frames received before 0.1 s into the bag are skipped; the latched /tf_static in them is not
    (["--start-offset", 0.1], 3 + 1),
])
def test_replay_until_the_end_then_exit(tmp_path, short_sequence, child_process, extra, published):
    """Without --loop the player publishes everything once and exits 0 by itself."""
    bag = tmp_path / "camera.mcap"
    write_camera_bag(tmp_path / "dir", short_sequence, "mcap")
    (mcap_file,) = (tmp_path / "dir").glob("*.mcap")
    mcap_file.rename(bag)  # a bare .mcap file works too
    child = child_process(replay_cmd(bag, "--rate", 10, "--no-clock", "--topics", CAMERA, "/tf_static", *extra))
    assert child.wait_for_line("done", 20.0), child.output()
    child.proc.wait(timeout=10)
    output = child.stop()
    assert child.proc.returncode == 0, output
    assert f"published {published} messages in 1 pass" in output, output


@pytest.mark.parametrize("make_path", [
    lambda tmp: tmp / "absent",
    lambda tmp: tmp,  # a directory without metadata.yaml
    lambda tmp: (tmp / "notes.txt").write_text("hello") and tmp / "notes.txt",
    lambda tmp: (tmp / "broken.mcap").write_bytes(b"not an mcap file") and tmp / "broken.mcap",
])
def test_not_a_bag_is_exit_code_2(tmp_path, capsys, make_path):
    from da3_ros.cli import main

    path = make_path(tmp_path)
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and str(path) in err[0], err


# ---------------------------------------------------------------- process-bag

N_PROCESS = 12
PIPELINE_PARAMS = dict(window_size=4, stride=1, min_confidence=0.0, min_depth=0.01, max_depth=100.0,
                       point_decimation=2)


@pytest.fixture(scope="module")
def sequence():
    return make_sequence("orbit", n_frames=N_PROCESS, width=48, height=32, seed=3)


def check_ground_truth(out_path, seq):
    """The output bag of the metric oracle holds the ground truth, at the input stamps."""
    from da3_ros.geometry.transforms import inv_se3
    from da3_ros.ros.conversions import image_to_depth, pose_to_matrix
    from da3_ros.geometry.transforms import T_BODY_OPTICAL

    out, types = read_output(out_path)
    inputs = [stamp_ns(t) for t in seq.stamps]
    assert types["/da3/keyframe"] == "da3_ros/msg/Keyframe" and types["/tf"] == "tf2_msgs/msg/TFMessage"
    for topic in ("/da3/depth/image", "/da3/depth/camera_info", "/da3/depth/confidence", "/da3/points",
                  "/da3/odometry", "/tf"):
        assert [ts for ts, _ in out[topic]] == inputs, f"{topic}: one message per frame at its image's stamp"
    # the path as the node's timer publishes it: every path_publish_period (1 s of bag time; the
    # sequence is shorter) while it grows, and at the end; each holds every pose up to its stamp
    paths = out["/da3/path"]
    assert paths[-1][0] == inputs[-1] and np.all(np.diff([ts for ts, _ in paths[:-1]]) >= 1e9)
    for ts, path in paths:
        assert [stamp_to_ns(p.header.stamp) for p in path.poses] == inputs[:inputs.index(ts) + 1]
    assert len(paths) == 2  # the first answered frame, and the end
    for topic, messages in out.items():
        for ts, msg in messages:
            header_stamps = [t.header.stamp for t in msg.transforms] if topic in ("/tf", "/tf_static") \
                else [msg.header.stamp]
            if topic != "/tf_static":  # copied with its own receive time
                assert all(stamp_to_ns(s) == ts for s in header_stamps), f"{topic}: bag time != header stamp"

    T_world_stream = T_BODY_OPTICAL @ inv_se3(seq.c2w[0])  # world = the first camera's body frame
    for i, ((_, depth_msg), (_, odom)) in enumerate(zip(out["/da3/depth/image"], out["/da3/odometry"])):
        depth = image_to_depth(depth_msg)
        valid = np.isfinite(depth)
        assert valid.mean() > 0.95, f"frame {i}: only {valid.mean():.0%} valid depth"
        np.testing.assert_allclose(depth[valid], seq.depth[i][valid], rtol=1e-5, err_msg=f"frame {i} depth")
        expected = T_world_stream @ seq.c2w[i]
        T = pose_to_matrix(odom.pose.pose)
        assert 1e3 * np.linalg.norm(T[:3, 3] - expected[:3, 3]) < 1.0, f"frame {i} position"
        assert np.abs(T[:3, :3] - expected[:3, :3]).max() < 1e-5, f"frame {i} rotation"
    keyframes = out["/da3/keyframe"]
    assert keyframes and keyframes[0][0] == inputs[0] and keyframes[0][1].metric_scale
    assert [kf.keyframe_id for _, kf in keyframes] == list(range(len(keyframes)))
    ((map_ts, cloud),) = out["/da3/map/points"]
    assert map_ts == inputs[-1] and cloud.width > 0 and cloud.header.frame_id == "odom"
    ((_, tf_static),) = out["/tf_static"]
    assert tf_static.transforms[0].child_frame_id == OPTICAL
    assert "/da3/camera_info/estimated" not in out, "CameraInfo was in the bag: nothing is estimated"
    return out


@pytest.mark.parametrize("storage,compressed,stride", [
    ("mcap", False, 1),
    ("sqlite3", True, 1),
    ("mcap", False, 5),  # 12 frames: the last 2 are answered by the flush at the end of the bag
])
def test_process_bag_equals_ground_truth(tmp_path, sequence, storage, compressed, stride):
    from da3_ros.ros.params import default_config
    from da3_ros.ros.process_bag import run_process_bag
    from da3_ros.synthetic.oracle import OracleModel

    write_camera_bag(tmp_path / "in", sequence, storage, compressed=compressed)  # PNG: lossless
    cfg = default_config(**{**PIPELINE_PARAMS, "stride": stride, "window_size": max(4, stride + 3)})
    summary = run_process_bag(tmp_path / "in", tmp_path / "out", cfg,
                              model=OracleModel(sequence, metric=True), storage=storage, progress=False)
    assert (summary["frames_in"], summary["answered"], summary["bad"]) == (N_PROCESS, N_PROCESS, 0), summary
    assert summary["camera_info_topic"] == CAMERA_INFO
    check_ground_truth(tmp_path / "out", sequence)
    assert_self_describing(tmp_path / "out")
    from da3_ros.ros.replay import is_latched

    with bags.open_reader(tmp_path / "out") as reader:  # replay serves these to late joiners
        latched = {c.topic for c in reader.connections if is_latched(c.topic, reader.connections)}
    assert latched == {"/tf_static", "/da3/map/points"}


def assert_self_describing(path):
    """Every topic's message definition is in the bag: a reader with no types of its own
    (rosbags' empty store) decodes the Keyframe."""
    from rosbags.typesys import Stores, get_types_from_msg
    from rosbags.typesys import get_typestore as empty_store

    store = empty_store(Stores.EMPTY)
    with bags.open_reader(path) as reader:
        for conn in reader.connections:
            assert conn.msgdef.data.strip(), f"{conn.topic}: no message definition stored"
            store.register(get_types_from_msg(conn.msgdef.data, conn.msgtype))
        m = next(bags.iter_messages(reader, ["/da3/keyframe"]))
    keyframe = store.deserialize_cdr(m.rawdata, m.msgtype)
    assert keyframe.keyframe_id == 0 and keyframe.depth.encoding == "32FC1"


def test_process_bag_survives_a_corrupt_record(tmp_path, sequence, capsys):
    from da3_ros.ros.params import default_config
    from da3_ros.ros.process_bag import run_process_bag
    from da3_ros.synthetic.oracle import OracleModel

    write_camera_bag(tmp_path / "in", sequence, "mcap", corrupt={4})
    summary = run_process_bag(tmp_path / "in", tmp_path / "out", default_config(**PIPELINE_PARAMS),
                              model=OracleModel(sequence, metric=True), progress=False)
    assert (summary["frames_in"], summary["answered"], summary["bad"]) == (N_PROCESS, N_PROCESS - 1, 1), summary
    assert "undecodable sensor_msgs/msg/Image" in capsys.readouterr().err
    out, _ = read_output(tmp_path / "out")
    assert stamp_ns(sequence.stamps[4]) not in [ts for ts, _ in out["/da3/depth/image"]]


def test_process_bag_command_line(tmp_path, sequence, capsys):
    from da3_ros.cli import main
    from da3_ros.synthetic.sequence import write_sequence

    write_sequence(sequence, tmp_path / "seq", depth_png=False)
    write_camera_bag(tmp_path / "in", sequence, "mcap")
    params = [arg for name, value in PIPELINE_PARAMS.items() for arg in ("-p", f"{name}:={value}")]
    code = main(["process-bag", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
                 f"oracle-metric:{tmp_path / 'seq'}", "--storage", "sqlite3", *params])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"{N_PROCESS} frames in, {N_PROCESS} answered, 0 bad" in err and str(tmp_path / "out") in err, err
    check_ground_truth(tmp_path / "out", sequence)


def test_process_bag_usage_errors(tmp_path, short_sequence, capsys):
    from da3_ros.cli import main

    write_camera_bag(tmp_path / "two", short_sequence, "mcap")
    with bags.open_writer(tmp_path / "ambiguous", storage="mcap") as writer:
        for topic in ("/left/image", "/right/image"):
            conn = bags.add_topic(writer, topic, bags.IMAGE, TS)
            writer.write(conn, 1, bags.serialize(TS, bags.image_msg(TS, short_sequence.images[0], "rgb8", 1.0)))
    cases = [
        ([str(tmp_path / "nope"), str(tmp_path / "o1")], "not a rosbag2"),
        ([str(tmp_path / "ambiguous"), str(tmp_path / "o2")], "/left/image"),
        ([str(tmp_path / "two"), str(tmp_path / "o3"), "-p", "window_size:=many"], "window_size"),
        ([str(tmp_path / "two"), str(tmp_path / "o4"), "-p", "no_such:=1"], "unknown parameter"),
        ([str(tmp_path / "two"), str(tmp_path / "two")], "exists"),
    ]
    for argv, text in cases:
        assert main(["process-bag", *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0] and text in err[0], (argv, err)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_process_bag_of_a_rig(tmp_path):
    """A three-camera rig bag through process-bag: rig frames grouped as the node
    does, every view answered (offline nothing is dropped), each camera's outputs
    under /da3/<camera>/ at its image's stamp; metric depth once the baselines
    fixed the scale, one odometry per rig frame; the rig's calibration in the summary."""
    from da3_ros.ros.conversions import image_to_depth
    from da3_ros.ros.params import default_config
    from da3_ros.ros.process_bag import run_process_bag
    from da3_ros.synthetic.oracle import OracleModel
    from da3_ros.synthetic.rig import make_rig_sequence, write_rig_bag

    rig = make_rig_sequence("three", "forward", n_frames=16, width=48, height=32, jitter=0.002, seed=3)
    write_rig_bag(rig, tmp_path / "in", "/rig")
    cfg = default_config(**{**PIPELINE_PARAMS, "cameras": rig.camera_names, "window_size": 9,
                            "base_frame": rig.base_frame})
    model = OracleModel(rig, max_scale=3.0, seed=2)
    summary = run_process_bag(tmp_path / "in", tmp_path / "out", cfg, model=model, progress=False)
    assert summary["answered"] == summary["frames_in"] == len(rig.stamps) and summary["bad"] == 0, summary
    assert model.n_predict == len(rig)  # one network call per rig frame
    assert summary["rig"]["complete"] == len(rig) and summary["rig"]["metres_per_first_window_unit"] > 0
    out, _ = read_output(tmp_path / "out")
    for c in rig.camera_names:
        views = [v for v in range(len(rig.stamps)) if rig.camera_names[rig.view_camera[v]] == c]
        depth = out[f"/da3/{c}/depth/image"]
        assert [ts for ts, _ in depth] == [stamp_ns(rig.stamps[v]) for v in views]
        for (ts, msg), v in list(zip(depth, views))[-3:]:  # metric by now
            d = image_to_depth(msg)
            ok = np.isfinite(d)
            np.testing.assert_allclose(d[ok], rig.depth[v][ok], rtol=1e-4)
    assert len(out["/da3/odometry"]) == len(rig) and "/da3/depth/image" not in out
