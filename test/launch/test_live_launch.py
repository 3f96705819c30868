"""live.launch.py as users start it, proven on its messages (launch_testing).

The launch file (as installed) starts da3_node with random DA3-small weights on
the CPU; a camera in this test publishes frames with CameraInfo, and every
frame's answer is checked: depth at the input's stamp and size, the world ->
optical frame transform on /tf and the odometry at that stamp, nothing at a
stamp that was never sent; after shutdown every process exited cleanly.

    pytest test/launch/test_live_launch.py     # or: launch_test test/launch/test_live_launch.py
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import unittest

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # `launch_test FILE` does not add it
from launch_harness import HEIGHT, NO_LAUNCH, WIDTH, all_output, launch_file, sandbox_dds, write_params

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

from da3_ros.ros.conversions import image_to_depth  # noqa: E402
from da3_ros.synthetic.sequence import make_sequence  # noqa: E402
from node_harness import OPTICAL_FRAME, Camera, Recorder, Spinner  # noqa: E402

NAMESPACE = "/launch_test"
CAMERA_NS = "/launch_test_camera"  # the camera's topics, remapped by the launch arguments
N_FRAMES = 10
START_TIMEOUT_S = 300.0  # the node imports torch and builds the network on two shared cores
ANSWER_TIMEOUT_S = 30.0
SCRATCH = tempfile.TemporaryDirectory(prefix="da3_live_launch_")  # removed at exit


@pytest.mark.launch_test
def generate_test_description():
    live = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file("live.launch.py")),
        launch_arguments={"namespace": NAMESPACE.strip("/"), "model": "random:da3-small",
                          "image": f"{CAMERA_NS}/image", "camera_info": f"{CAMERA_NS}/camera_info",
                          "params_file": write_params(pathlib.Path(SCRATCH.name)), "rviz": "false"}.items(),
    )
    return LaunchDescription([live, launch_testing.actions.ReadyToTest()]), {}


class TestLiveLaunchAnswersTheCamera(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.context = Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("live_launch_test_camera", context=cls.context)
        cls.camera = Camera(cls.node, namespace=CAMERA_NS)
        cls.recorder = Recorder(cls.node, namespace=NAMESPACE)
        cls.spinner = Spinner(cls.context, cls.node)

    @classmethod
    def tearDownClass(cls):
        cls.spinner.shutdown()
        cls.node.destroy_node()
        cls.context.try_shutdown()

    def test_depth_tf_and_odometry_at_the_input_stamps(self, proc_output):
        seq = make_sequence("forward", n_frames=N_FRAMES, width=WIDTH, height=HEIGHT, seed=3)
        image_topic = f"{CAMERA_NS}/image"
        subscribed = self.spinner.wait_for(lambda: self.node.count_subscribers(image_topic) > 0, START_TIMEOUT_S)
        self.assertTrue(subscribed, f"da3_node never subscribed to {image_topic}:\n{all_output(proc_output)[-4000:]}")
        rec, sent = self.recorder, []
        for i in range(N_FRAMES):  # one at a time: the node keeps only the newest unprocessed frame
            sent.append(self.camera.publish_rgb(seq.images[i], seq.stamps[i], K=seq.intrinsics))
            self.spinner.wait_for(lambda: sent[-1] in rec.stamps("depth/image"), ANSWER_TIMEOUT_S)
        answered = sorted(set(rec.stamps("depth/image")))
        # best-effort images may be lost, and the first may arrive before the warm-up ends
        self.assertGreaterEqual(len(answered), N_FRAMES - 3,
                                f"answered {len(answered)} of {N_FRAMES} frames\n{all_output(proc_output)[-4000:]}")
        self.spinner.wait_for(lambda: all(rec.at("odometry", ns) and rec.at("/tf", ns) for ns in answered), 10.0)

        for topic in ("depth/image", "depth/camera_info", "odometry", "/tf"):
            unknown = set(rec.stamps(topic)) - set(sent)
            self.assertFalse(unknown, f"{topic} carries stamps that were never sent: {sorted(unknown)}")
        for ns in answered:
            depth = rec.at("depth/image", ns)
            self.assertEqual((depth.width, depth.height, depth.encoding), (WIDTH, HEIGHT, "32FC1"))
            self.assertEqual(depth.header.frame_id, OPTICAL_FRAME)
            self.assertTrue(np.isfinite(image_to_depth(depth)).any(), "depth is all NaN")
            info = rec.at("depth/camera_info", ns)
            self.assertIsNotNone(info, f"no depth/camera_info at {ns}")
            self.assertEqual((info.width, info.height), (WIDTH, HEIGHT))

            tf = rec.at("/tf", ns)
            self.assertIsNotNone(tf, f"no transform on /tf at {ns}")
            self.assertEqual((tf.header.frame_id, tf.child_frame_id), ("odom", OPTICAL_FRAME))
            odom = rec.at("odometry", ns)
            self.assertIsNotNone(odom, f"no odometry at {ns}")
            self.assertEqual((odom.header.frame_id, odom.child_frame_id), ("odom", OPTICAL_FRAME))
            # the two carry one pose
            p, t = odom.pose.pose.position, tf.transform.translation
            np.testing.assert_allclose([p.x, p.y, p.z], [t.x, t.y, t.z], atol=1e-6)
            q = odom.pose.pose.orientation
            self.assertAlmostEqual(float(np.linalg.norm([q.x, q.y, q.z, q.w])), 1.0, places=5)
        # CameraInfo was used (the first image may beat its CameraInfo: the last one cannot)
        info = rec.at("depth/camera_info", answered[-1])
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), seq.intrinsics, rtol=1e-6)


@launch_testing.post_shutdown_test()
class TestLiveLaunchShutdown(unittest.TestCase):
    def test_every_process_exited_cleanly(self, proc_info, proc_output):
        launch_testing.asserts.assertExitCodes(proc_info)
        self.assertNotIn("Traceback", all_output(proc_output))
