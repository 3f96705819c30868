"""da3_node as a managed (lifecycle) node, driven through the lifecycle_msgs
services over DDS as a launch file or a lifecycle manager would: what it
publishes in each state, the world kept across deactivate / activate, the model
freed on cleanup, a configure that fails leaving the node up."""

from __future__ import annotations

import gc
import weakref

import pytest
from lifecycle_msgs.msg import State, Transition
from rclpy.parameter import Parameter

from da3_ros.synthetic.sequence import make_sequence
from node_harness import Camera, Lifecycle, Recorder, Spinner

W, H = 64, 48


@pytest.fixture(scope="module")
def sequence():
    return make_sequence("forward", n_frames=30, width=W, height=H, seed=5)


def managed_node(context, model: str):
    from da3_ros.ros.node import Da3Node

    params = {"model": model, "device": "cpu", "precision": "fp32", "process_res": 56, "window_size": 3,
              "min_confidence": 0.0, "min_depth": 0.0, "max_depth": 1000.0, "diagnostics_period": 0.2}
    return Da3Node(autostart=False, context=context,
                   parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])


def test_transitions_over_dds(ros_context, make_node, sequence):
    node = managed_node(ros_context, "random:da3-small")
    io_node = make_node("test_lifecycle_client")
    camera, recorder = Camera(io_node), Recorder(io_node)
    spinner = Spinner(ros_context, node, io_node)
    sent = iter(range(len(sequence)))

    def answered_after_sending(n: int = 3, timeout: float = 10.0) -> int:
        """Send n frames, return how many got a depth image back."""
        got = 0
        for _ in range(n):
            i = next(sent)
            ns = camera.publish_rgb(sequence.images[i], sequence.stamps[i])
            got += spinner.wait_for(lambda: ns in recorder.stamps("depth/image"), timeout)
        return got

    try:
        lc = Lifecycle(io_node, spinner)
        assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert node.model is None and io_node.count_publishers("depth/image") == 0  # nothing made yet

        assert lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == State.PRIMARY_STATE_INACTIVE and node.model is not None
        model_ref = weakref.ref(node.model)
        assert io_node.count_subscribers("image") == 0  # inactive: not listening
        assert answered_after_sending(2, timeout=1.0) == 0

        assert lc.transition(Transition.TRANSITION_ACTIVATE)
        assert lc.state() == State.PRIMARY_STATE_ACTIVE
        assert spinner.wait_for(lambda: io_node.count_subscribers("image") > 0, 10.0)
        assert answered_after_sending(4) >= 3, "active node did not answer"
        trajectory = len(node.pipeline.streamer.trajectory())
        assert trajectory >= 3

        assert lc.transition(Transition.TRANSITION_DEACTIVATE)
        assert lc.state() == State.PRIMARY_STATE_INACTIVE
        before = len(recorder.stamps("depth/image"))
        assert answered_after_sending(2, timeout=1.0) == 0
        assert len(recorder.stamps("depth/image")) == before, "an inactive node published"
        assert node.model is not None and len(node.pipeline.streamer.trajectory()) == trajectory  # world kept

        assert lc.transition(Transition.TRANSITION_ACTIVATE)
        assert spinner.wait_for(lambda: io_node.count_subscribers("image") > 0, 10.0)
        assert answered_after_sending(3) >= 2
        streamer = node.pipeline.streamer
        assert len(streamer.trajectory()) > trajectory and streamer.n_resets == 0  # the same world goes on

        assert lc.transition(Transition.TRANSITION_DEACTIVATE)
        assert lc.transition(Transition.TRANSITION_CLEANUP)
        assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED
        del streamer
        gc.collect()
        assert node.model is None and node.pipeline is None
        assert model_ref() is None, "the model (and its weights) outlived cleanup"

        assert lc.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert lc.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        spinner.shutdown()
        node.destroy_node()


def test_configure_failure_keeps_the_node_up(ros_context, make_node):
    node = managed_node(ros_context, "no/such-model-id-anywhere")
    io_node = make_node("test_lifecycle_client")
    spinner = Spinner(ros_context, node, io_node)
    try:
        lc = Lifecycle(io_node, spinner)
        assert not lc.transition(Transition.TRANSITION_CONFIGURE)
        assert lc.state() == State.PRIMARY_STATE_UNCONFIGURED  # still up, still answering its services
        assert "no/such-model-id-anywhere" in node.configure_error
    finally:
        spinner.shutdown()
        node.destroy_node()


def test_plain_node_refuses_to_start_without_its_model(ros_context):
    """da3_node (autostart) fails at once, with the reason, when the model cannot load."""
    from da3_ros.ros.node import Da3Node

    with pytest.raises(RuntimeError, match="no/such-model-id-anywhere"):
        Da3Node(context=ros_context, parameter_overrides=[Parameter("model", value="no/such-model-id-anywhere"),
                                                           Parameter("device", value="cpu")])
