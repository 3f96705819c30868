"""Over DDS: one bad stamp never erases the node's map and path; a real restart
of time does, once. The decisions are the streaming core's (stream/timeline.py);
these tests check that the live node keeps them: its published path, map and
odometry, and its /diagnostics counters."""

from __future__ import annotations

import time

import numpy as np
import pytest

from da3_ros.geometry.transforms import T_BODY_OPTICAL, inv_se3
from da3_ros.ros.conversions import pose_to_matrix, stamp_to_ns
from da3_ros.synthetic.oracle import OracleModel
from da3_ros.synthetic.sequence import make_sequence
from node_harness import feed, header, stamp_ns

N = 16


@pytest.fixture(scope="module")
def sequence():
    return make_sequence("forward", n_frames=N, width=64, height=48, seed=4)


def counts(node):
    return dict(node.pipeline.streamer.counts)


def publish_until(spinner, publish, predicate, tries=20) -> bool:
    """Publish (best effort may drop it) until the node shows it saw it."""
    for _ in range(tries):
        publish()
        if spinner.wait_for(predicate, 0.25):
            return True
    return False


def deliver(spinner, node, publish, tries=20) -> None:
    """Publish one message until the node's worker has taken it from its one-slot
    buffer (best effort may drop it; a newer frame would replace it there)."""
    for _ in range(tries):
        received = node.stats.received
        publish()
        if spinner.wait_for(lambda: node.stats.received > received and node.slot.empty, 0.25):
            return
    raise AssertionError("the node never took the message")


def path_poses(recorder):
    """Poses in the newest path message (it comes on its timer; 0 before the first)."""
    paths = recorder.by_topic.get("path")
    return len(paths[-1].poses) if paths else 0


def odometry_at(recorder, seconds):
    ns = stamp_ns(seconds)
    return [pose_to_matrix(m.pose.pose) for m in recorder.by_topic["odometry"] if stamp_to_ns(m.header.stamp) == ns]


def test_outlier_stamps_keep_map_and_path(rig, sequence):
    """A frame stamped far in the past, one far in the future, and a duplicate,
    between good frames: each dropped and counted; no reset; the path keeps every
    good frame and the map never shrinks."""
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True))
    img, t, K = sequence.images, sequence.stamps, sequence.intrinsics
    for i in range(6):
        assert feed(camera, recorder, spinner, img[i], t[i], K)
    assert spinner.wait_for(lambda: recorder.by_topic.get("map/points"), 5.0)
    map_before = recorder.by_topic["map/points"][-1].width
    assert map_before > 0

    bad = [("stamp_backwards_outlier", t[6] - 500.0), ("stamp_forward_outlier", t[6] + 1e5)]
    for k, (reason, stamp) in enumerate(bad):
        i = 6 + k
        # the outlier is held until the next good frame says it was one
        deliver(spinner, node, lambda: camera.publish_rgb(img[i], stamp, K))
        assert feed(camera, recorder, spinner, img[i], t[i], K)
        assert counts(node).get(reason, 0) == 1, counts(node)
    # a duplicate of an answered frame
    seen = counts(node).get("duplicate_stamp", 0)
    assert publish_until(spinner, lambda: camera.publish_rgb(img[7], t[7], K),
                         lambda: counts(node).get("duplicate_stamp", 0) > seen)
    for i in range(8, 12):
        assert feed(camera, recorder, spinner, img[i], t[i], K)

    assert counts(node).get("resets", 0) == 0
    assert spinner.wait_for(lambda: path_poses(recorder) == 12, 5.0), f"path has {path_poses(recorder)} poses, not 12"
    assert not [s for s in recorder.stamps("odometry") if s not in {stamp_ns(x) for x in t[:12]}], \
        "an outlier frame was answered"
    map_now = recorder.by_topic["map/points"][-1].width
    assert map_now >= map_before
    # the world did not move: frame 11's pose is still ground truth in the first frame's world
    expected = T_BODY_OPTICAL @ inv_se3(sequence.c2w[0]) @ sequence.c2w[11]
    np.testing.assert_allclose(odometry_at(recorder, t[11])[-1], expected, atol=1e-4)
    diag = {kv.key: kv.value for kv in recorder.by_topic["/diagnostics"][-1].status[0].values}
    assert spinner.wait_for(lambda: {kv.key: kv.value for kv in recorder.by_topic["/diagnostics"][-1].status[0].values}
                            ["stamp_outliers"] == "2", 3.0), diag


def test_looping_bag_resets_once(rig, sequence):
    """Time goes back and the next frame continues the new timeline: one reset,
    and the frame after the jump is the new world's origin."""
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True))
    img, t, K = sequence.images, sequence.stamps, sequence.intrinsics
    for i in range(14):
        assert feed(camera, recorder, spinner, img[i], t[i], K)
    # the bag starts over at frame 2 (11 frame intervals back: a jump, not a late
    # message): frame 2 is held, frame 3 confirms the restart
    before = {i: len(odometry_at(recorder, t[i])) for i in (2, 3, 4)}
    deliver(spinner, node, lambda: camera.publish_rgb(img[2], t[2], K))
    assert counts(node).get("resets", 0) == 0  # one frame back in time is not yet a restart
    for i in (3, 4):
        deliver(spinner, node, lambda: camera.publish_rgb(img[i], t[i], K))
    assert spinner.wait_for(lambda: all(len(odometry_at(recorder, t[i])) == before[i] + 1 for i in (2, 3, 4)), 5.0)
    assert counts(node)["resets"] == 1 and counts(node)["reset_time_backwards"] == 1
    # both frames after the jump are answered, frame 2 is the new world's origin
    np.testing.assert_allclose(odometry_at(recorder, t[2])[-1], T_BODY_OPTICAL, atol=1e-6)
    expected = T_BODY_OPTICAL @ inv_se3(sequence.c2w[2]) @ sequence.c2w[4]
    np.testing.assert_allclose(odometry_at(recorder, t[4])[-1], expected, atol=1e-4)
    # the published path restarted with the new world
    assert spinner.wait_for(lambda: path_poses(recorder) <= 3, 3.0)


def test_time_restart_forgets_the_old_timelines_odometry(rig, sequence, make_node):
    """Pose-conditioned mode on a looping bag whose odometry restarts in another
    world (a VIO started over): once the restart is found, the node's poses are
    the new odometry's, never the old loop's pose at the same stamp."""
    from nav_msgs.msg import Odometry

    from da3_ros.ros.conversions import matrix_to_pose

    odom_node = make_node("test_wheel_odometry")
    odom_pub = odom_node.create_publisher(Odometry, "wheel/odom", 50)
    node, camera, recorder, spinner = rig(OracleModel(sequence), external_odometry_topic="wheel/odom",
                                          publish_tf=False)
    assert spinner.wait_for(lambda: odom_node.count_subscribers("wheel/odom") > 0, 10.0)
    img, t, K = sequence.images, sequence.stamps, sequence.intrinsics
    second_world = np.eye(4)
    second_world[:3, 3] = (5.0, 0.0, 0.0)  # the second loop's odometry world, 5 m from the first's

    def publish_odometry(i, world) -> None:
        """The base's pose at frame i, until the node looks it up (at most 2 s: an
        older pose of that stamp may answer instead, which the outputs then show)."""
        pose = world @ sequence.c2w[i] @ inv_se3(T_BODY_OPTICAL)  # no base_frame: the camera's body is the base
        msg = Odometry(header=header(t[i]), child_frame_id="base_link")
        msg.header.frame_id = "odom"
        msg.pose.pose = matrix_to_pose(pose)
        for _ in range(20):
            odom_pub.publish(msg)
            if spinner.wait_for(lambda: np.allclose(node.pipeline.odometry.nearest(t[i], 1e-6)[0], pose, atol=1e-9)
                                if node.pipeline.odometry.nearest(t[i], 1e-6) else False, 0.1):
                return

    for i in range(4, 14):  # the first loop: frames 4 to 13
        publish_odometry(i, np.eye(4))
        assert feed(camera, recorder, spinner, img[i], t[i], K)
    # the bag and its odometry start over at frame 0: frame 0 is held, frame 1 confirms the restart
    for i in (0, 1):
        publish_odometry(i, second_world)
        deliver(spinner, node, lambda: camera.publish_rgb(img[i], t[i], K))
    assert spinner.wait_for(lambda: counts(node).get("reset_time_backwards", 0) == 1, 5.0), counts(node)
    for i in (2, 3):
        publish_odometry(i, second_world)
        assert feed(camera, recorder, spinner, img[i], t[i], K)
    publish_odometry(4, second_world)  # frame 4's stamp had a pose in the first loop too
    deliver(spinner, node, lambda: camera.publish_rgb(img[4], t[4], K))
    assert spinner.wait_for(lambda: len(odometry_at(recorder, t[4])) == 2, 5.0)
    for i in (0, 1, 2, 3, 4):
        T = odometry_at(recorder, t[i])[-1]
        np.testing.assert_allclose(T[:3, 3], (second_world @ sequence.c2w[i])[:3, 3], atol=1e-3, err_msg=f"frame {i}")


def test_resolution_change_keeps_the_world(rig, sequence):
    """The driver switches to half resolution mid-stream: no reset, the path goes
    on, and poses stay in the same world."""
    small = make_sequence("forward", n_frames=N, width=32, height=24, seed=4)

    class BySize(OracleModel):
        """The exact oracle for either image size (the same scene rendered twice)."""

        def __init__(self):
            super().__init__(sequence, metric=True)
            self.half = OracleModel(small, metric=True)

        def predict(self, frames, handles, decode, intrinsics=None, c2w=None):
            model = self.half if frames[0].width == small.width else super()
            return model.predict(frames, handles, decode, intrinsics, c2w)

    node, camera, recorder, spinner = rig(BySize())
    for i in range(6):
        assert feed(camera, recorder, spinner, sequence.images[i], sequence.stamps[i], sequence.intrinsics)
    for i in range(6, 10):
        assert feed(camera, recorder, spinner, small.images[i], small.stamps[i], small.intrinsics)
    depth = recorder.by_topic["depth/image"][-1]
    assert (depth.width, depth.height) == (32, 24)
    assert counts(node).get("resets", 0) == 0 and counts(node)["resolution_changes"] == 1
    assert spinner.wait_for(lambda: path_poses(recorder) == 10, 5.0)
    expected = T_BODY_OPTICAL @ inv_se3(sequence.c2w[0]) @ sequence.c2w[9]
    np.testing.assert_allclose(odometry_at(recorder, small.stamps[9])[-1][:3, 3], expected[:3, 3], atol=2e-3)


def test_sim_time_jumping_back_resets(rig, sequence, make_node):
    """Under use_sim_time, /clock jumping back (ros2 bag play --loop --clock) resets the world."""
    from rosgraph_msgs.msg import Clock

    from da3_ros.ros.conversions import ns_to_stamp

    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True), use_sim_time=True)
    clock_pub = make_node("test_clock").create_publisher(Clock, "/clock", 10)
    img, t, K = sequence.images, sequence.stamps, sequence.intrinsics
    assert publish_until(spinner, lambda: clock_pub.publish(Clock(clock=ns_to_stamp(stamp_ns(t[5])))),
                         lambda: node.get_clock().now().nanoseconds == stamp_ns(t[5]))
    for i in range(5):
        assert feed(camera, recorder, spinner, img[i], t[i], K)
    assert publish_until(spinner, lambda: clock_pub.publish(Clock(clock=ns_to_stamp(stamp_ns(t[0])))),
                         lambda: node.get_clock().now().nanoseconds == stamp_ns(t[0]))
    # the reset is applied by the worker before the next frame, which starts the new world
    assert feed(camera, recorder, spinner, img[5], t[5], K)
    assert counts(node).get("reset_clock_jumped_back", 0) == 1 and counts(node)["resets"] == 1
    np.testing.assert_allclose(odometry_at(recorder, t[5])[-1], T_BODY_OPTICAL, atol=1e-6)
    # the published path starts over too: frame 5 alone, at the new origin (its timer is
    # on the steady clock: it comes while /clock stands still, as after a bag's end)
    assert spinner.wait_for(lambda: recorder.by_topic.get("path") and
                            stamp_to_ns(recorder.by_topic["path"][-1].header.stamp) == stamp_ns(t[5]), 3.0)
    path = recorder.by_topic["path"][-1]
    assert [stamp_to_ns(p.header.stamp) for p in path.poses] == [stamp_ns(t[5])]
    np.testing.assert_allclose(pose_to_matrix(path.poses[0].pose), T_BODY_OPTICAL, atol=1e-6)


def test_start_node_rejects_values_that_do_not_fit(ros_context):
    from node_harness import start_node

    with pytest.raises(ValueError, match="max_depth"):
        start_node(ros_context, OracleModel(make_sequence("forward", n_frames=2, width=16, height=12)),
                   min_depth=5.0, max_depth=1.0)


class Busy:
    """The exact oracle behind a model call that takes `delay` seconds (a network
    slower than the camera); remembers the newest frame's stamp of every window."""

    def __init__(self, model):
        self.model, self.delay, self.newest = model, 0.0, []
        self.name, self.metric = model.name, model.metric

    def encode(self, frame):
        return self.model.encode(frame)

    def predict(self, frames, handles, decode, intrinsics=None, c2w=None):
        time.sleep(self.delay)
        self.newest.append(stamp_ns(frames[-1].stamp))
        return self.model.predict(frames, handles, decode, intrinsics, c2w)


def test_a_busy_node_skips_frames_without_holding_them(rig):
    """A 30 Hz camera and a network that needs 0.5 s: the node takes only the
    newest image each time (stamp steps of ~15 camera intervals, far beyond a
    clock jump's 10). They arrived that far apart, so time went on: each taken
    frame is answered by one window, never held and answered in a pair with the
    next one (which ran the network twice per answered frame)."""
    seq = make_sequence("forward", n_frames=75, width=64, height=48, seed=4)
    model = Busy(OracleModel(seq, metric=True))
    node, camera, recorder, spinner = rig(model)
    img, t, K = seq.images, seq.stamps, seq.intrinsics
    for i in range(5):  # the node keeps up at first: frame intervals of 1/30 s
        assert feed(camera, recorder, spinner, img[i], t[i], K)
    model.delay, first = 0.5, len(model.newest)
    start = time.monotonic()
    for i in range(5, len(t)):  # then real time, on an absolute schedule
        time.sleep(max(0.0, start + (t[i] - t[5]) - time.monotonic()))
        camera.publish_rgb(img[i], t[i], K)
    assert spinner.wait_for(lambda: node.slot.empty and len(recorder.stamps("depth/image")) >= len(model.newest), 5.0)
    taken = model.newest[first:]
    assert len(taken) >= 3, taken
    steps = np.diff(taken) / 1e9 * 30
    assert np.all(steps > 5), f"windows ran for consecutive frames (camera intervals between them: {steps})"
    assert len(set(model.newest)) == len(model.newest)  # no frame ran twice
    counts_now = counts(node)
    assert not counts_now.get("stamp_forward_outlier") and not counts_now.get("resets"), counts_now
    assert set(taken) <= set(recorder.stamps("depth/image"))  # each window answered
