"""live.launch.py managed:=true (launch_testing): the lifecycle node `da3_managed_node`
is brought up through configure and activate by the launch file's lifecycle
events, then answers the camera as da3_node does (the same checks on its
messages, and a clean exit), and from then on obeys `ros2 lifecycle` as a
lifecycle manager drives it: deactivated it stays inactive and answers nothing,
activated again it answers, cleaned up it is unconfigured."""

from __future__ import annotations

import pathlib
import sys
import unittest

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # `launch_test FILE` does not add it
from launch_harness import HEIGHT, NO_LAUNCH, WIDTH, all_output, launch_file, write_params

pytest.importorskip("launch_ros", reason=NO_LAUNCH)  # first: the repo's launch/ folder imports as `launch`
launch_testing = pytest.importorskip("launch_testing", reason=NO_LAUNCH)

import launch_testing.actions  # noqa: E402
import rclpy  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from rclpy.context import Context  # noqa: E402

from da3_ros.synthetic.sequence import make_sequence  # noqa: E402
from node_harness import Camera, Lifecycle, Recorder, Spinner  # noqa: E402
# the same checks on the messages and on the exit as for the plain node
from test_live_launch import (ANSWER_TIMEOUT_S, CAMERA_NS, NAMESPACE, SCRATCH, START_TIMEOUT_S,  # noqa: E402,F401
                              TestLiveLaunchAnswersTheCamera, TestLiveLaunchShutdown)

#: how long an inactive node is fed frames while nothing may come back: the old
#: launch file re-activated it within one event-loop turn of the deactivation
QUIET_S = 4.0


@pytest.mark.launch_test
def generate_test_description():
    live = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file("live.launch.py")),
        launch_arguments={"namespace": NAMESPACE.strip("/"), "model": "random:da3-small", "managed": "true",
                          "image": f"{CAMERA_NS}/image", "camera_info": f"{CAMERA_NS}/camera_info",
                          "params_file": write_params(pathlib.Path(SCRATCH.name)), "rviz": "false"}.items(),
    )
    return LaunchDescription([live, launch_testing.actions.ReadyToTest()]), {}


class TestManagedLaunchObeysLifecycle(unittest.TestCase):
    """Runs after the camera test (unittest orders the classes by name)."""

    @classmethod
    def setUpClass(cls):
        cls.context = Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("managed_launch_test_client", context=cls.context)
        cls.camera = Camera(cls.node, namespace=CAMERA_NS)
        cls.recorder = Recorder(cls.node, namespace=NAMESPACE)
        cls.spinner = Spinner(cls.context, cls.node)
        cls.sequence = make_sequence("forward", n_frames=60, width=WIDTH, height=HEIGHT, seed=4)
        cls.next_frame = 0

    @classmethod
    def tearDownClass(cls):
        cls.spinner.shutdown()
        cls.node.destroy_node()
        cls.context.try_shutdown()

    def send(self):
        """One frame, stamped on after the camera test's last (1000.3 s, 30 Hz): no stamp
        jump for the node's timeline to hold; returns its stamp (ns)."""
        i = type(self).next_frame
        type(self).next_frame += 1
        return self.camera.publish_rgb(self.sequence.images[i], 0.5 + self.sequence.stamps[i],
                                       K=self.sequence.intrinsics)

    def answered(self, tries: int = 5) -> bool:
        """A frame is answered (best effort may lose one: a few tries)."""
        for _ in range(tries):
            ns = self.send()
            if self.spinner.wait_for(lambda: ns in self.recorder.stamps("depth/image"), ANSWER_TIMEOUT_S):
                return True
        return False

    def test_deactivate_activate_cleanup(self, proc_output):
        image_topic = f"{CAMERA_NS}/image"
        self.assertTrue(self.spinner.wait_for(lambda: self.node.count_subscribers(image_topic) > 0, START_TIMEOUT_S),
                        f"the launch never activated the node:\n{all_output(proc_output)[-4000:]}")
        lc = Lifecycle(self.node, self.spinner, target=f"{NAMESPACE}/da3_node")
        self.assertEqual(lc.state(), State.PRIMARY_STATE_ACTIVE)
        self.assertTrue(self.answered(), "the active node answered no frame")

        self.assertTrue(lc.transition(Transition.TRANSITION_DEACTIVATE))
        before = len(self.recorder.stamps("depth/image"))
        for _ in range(int(QUIET_S / 0.2)):  # a camera at 5 Hz while inactive
            self.send()
            self.spinner.wait_for(lambda: False, 0.2)
        self.assertEqual(lc.state(), State.PRIMARY_STATE_INACTIVE, "the launch file re-activated the node")
        self.assertEqual(len(self.recorder.stamps("depth/image")), before, "an inactive node published depth")
        self.assertEqual(self.node.count_subscribers(image_topic), 0, "an inactive node subscribes to the camera")

        self.assertTrue(lc.transition(Transition.TRANSITION_ACTIVATE))
        self.assertEqual(lc.state(), State.PRIMARY_STATE_ACTIVE)
        self.assertTrue(self.spinner.wait_for(lambda: self.node.count_subscribers(image_topic) > 0, 10.0))
        self.assertTrue(self.answered(), "re-activated, the node answered no frame")

        self.assertTrue(lc.transition(Transition.TRANSITION_DEACTIVATE))
        self.assertTrue(lc.transition(Transition.TRANSITION_CLEANUP))
        self.spinner.wait_for(lambda: False, 1.0)  # an unwanted configure would come within this
        self.assertEqual(lc.state(), State.PRIMARY_STATE_UNCONFIGURED)
        self.assertEqual(self.node.count_publishers(f"{NAMESPACE}/depth/image"), 0, "cleanup left the publishers")
        self.assertIn("cleaned up: model released", all_output(proc_output))
