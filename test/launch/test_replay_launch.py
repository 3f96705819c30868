"""replay.launch.py on a bag this test writes, proven on the node's answers (launch_testing).

The bag (sqlite3, readable by every distro's `ros2 bag play`) holds a synthetic
camera; the launch plays it in a loop with the player `auto` picks here (`ros2
bag play` where rosbag2 is installed, else `da3_ros replay`) while da3_node runs
on sim time. The node must answer the bag's frames: depth and /tf at the bag's
stamps, at its image size, and nothing else; after shutdown the node and the
player exited cleanly. A player that cannot start shuts the launch down, so this
test fails then: DA3_TEST_REPLAY_PLAYER=ros2bag on a machine without rosbag2
shows it.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import unittest

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # `launch_test FILE` does not add it
from launch_harness import (HEIGHT, NO_LAUNCH, WIDTH, all_output, launch_file, sandbox_dds, write_camera_bag,
                            write_params)

pytest.importorskip("launch_ros", reason=NO_LAUNCH)  # first: the repo's launch/ folder imports as `launch`
launch_testing = pytest.importorskip("launch_testing", reason=NO_LAUNCH)
sandbox_dds()

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.context import Context  # noqa: E402

from da3_ros.synthetic.sequence import make_sequence  # noqa: E402
from node_harness import Recorder, Spinner  # noqa: E402

NAMESPACE = "/replay_test"
IMAGE, CAMERA_INFO, OPTICAL = "/replay_cam/image", "/replay_cam/camera_info", "replay_cam_optical_frame"
N_FRAMES = 12
FRAME_PERIOD_S = 0.25  # a 3 s bag: each pass is long enough for sim-time timers (diagnostics) to fire
WANTED_ANSWERS = 6  # distinct bag frames answered (the node drops frames while busy; the bag loops)
PLAYER = os.environ.get("DA3_TEST_REPLAY_PLAYER", "auto")
ANSWER_TIMEOUT_S = 300.0  # the node imports torch and builds the network on two shared cores
SCRATCH = tempfile.TemporaryDirectory(prefix="da3_replay_launch_")  # removed at exit


@pytest.mark.launch_test
def generate_test_description():
    scratch = pathlib.Path(SCRATCH.name)
    seq = make_sequence("orbit", n_frames=N_FRAMES, width=WIDTH, height=HEIGHT, seed=4)
    bag = scratch / f"bag_{len(os.listdir(scratch))}"  # a new one if the description is made again
    stamps_s = [100.0 + i * FRAME_PERIOD_S for i in range(N_FRAMES)]
    stamps = write_camera_bag(bag, seq, stamps_s, IMAGE, CAMERA_INFO, OPTICAL)
    replay = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file("replay.launch.py")),
        launch_arguments={"bag": str(bag), "player": PLAYER, "loop": "true", "rate": "1.0",
                          "namespace": NAMESPACE.strip("/"), "model": "random:da3-small", "image": IMAGE,
                          "camera_info": CAMERA_INFO, "params_file": write_params(scratch), "rviz": "false"}.items(),
    )
    return LaunchDescription([replay, launch_testing.actions.ReadyToTest()]), {"bag_stamps": stamps}


def expected_player():
    """What player:=auto must pick here: the launch file's own rule, restated."""
    import importlib.util
    import shutil

    if PLAYER != "auto":
        return PLAYER
    return "ros2bag" if shutil.which("ros2") and importlib.util.find_spec("ros2bag") else "da3_ros"


class TestReplayLaunchAnswersTheBag(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.context = Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("replay_launch_test_recorder", context=cls.context)
        cls.recorder = Recorder(cls.node, namespace=NAMESPACE)
        cls.spinner = Spinner(cls.context, cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.spinner.shutdown()
        cls.node.destroy_node()
        cls.context.try_shutdown()

    def test_the_chosen_player_plays_the_bag_with_the_flags(self, proc_info):
        proc_info.assertWaitForStartup(process="player", timeout=30)
        (player,) = [p for p in proc_info.processes() if p.process_details["name"].startswith("player")]
        cmd = " ".join(player.process_details["cmd"])
        if expected_player() == "ros2bag":
            self.assertIn("ros2 bag play", cmd)
            self.assertIn("--clock", cmd)
        else:
            self.assertRegex(cmd, r"/da3_ros replay ")
            self.assertNotIn("--no-clock", cmd)
        self.assertIn("--loop", cmd)
        self.assertIn("--rate 1.0", cmd)

    def test_the_node_answers_the_bag_frames_at_their_stamps(self, proc_output, bag_stamps):
        rec = self.recorder
        answered = lambda: set(rec.stamps("depth/image")) & set(bag_stamps)  # noqa: E731
        ok = self.spinner.wait_for(lambda: len(answered()) >= WANTED_ANSWERS, ANSWER_TIMEOUT_S)
        self.assertTrue(ok, f"the node answered {len(answered())} of the bag's {N_FRAMES} frames "
                            f"(wanted {WANTED_ANSWERS}):\n{all_output(proc_output)[-4000:]}")
        self.spinner.wait_for(lambda: all(rec.at("/tf", ns) for ns in answered()), 10.0)
        for topic in ("depth/image", "depth/camera_info", "odometry", "/tf"):
            unknown = set(rec.stamps(topic)) - set(bag_stamps)
            self.assertFalse(unknown, f"{topic} carries stamps that are not the bag's: {sorted(unknown)}")
        for ns in answered():
            depth = rec.at("depth/image", ns)
            self.assertEqual((depth.width, depth.height, depth.encoding), (WIDTH, HEIGHT, "32FC1"))
            self.assertEqual(depth.header.frame_id, OPTICAL)
            tf = rec.at("/tf", ns)
            self.assertIsNotNone(tf, f"no transform on /tf at the bag stamp {ns}")
            self.assertEqual((tf.header.frame_id, tf.child_frame_id), ("odom", OPTICAL))

    def test_the_node_runs_on_the_bag_clock(self, bag_stamps):
        # clock:=true: the player publishes /clock and the node's own stamps (diagnostics) follow it
        lo, hi = min(bag_stamps) - 1_000_000_000, max(bag_stamps) + 1_000_000_000
        on_bag_time = lambda: [ns for ns in self.recorder.stamps("/diagnostics") if lo <= ns <= hi]  # noqa: E731
        self.assertTrue(self.spinner.wait_for(on_bag_time, ANSWER_TIMEOUT_S),
                        f"no /diagnostics stamped on the bag's clock; stamps seen: "
                        f"{self.recorder.stamps('/diagnostics')[-5:]}")


@launch_testing.post_shutdown_test()
class TestReplayLaunchShutdown(unittest.TestCase):
    def test_the_node_and_the_player_exited_cleanly(self, proc_info, proc_output):
        names = " ".join(proc_info.process_names())
        self.assertIn("da3_node", names)
        self.assertIn("player", names)
        launch_testing.asserts.assertExitCodes(proc_info)
        self.assertNotIn("Traceback", all_output(proc_output))  # stopped with frames in flight
