"""Every message type the node uses crosses real DDS between two processes intact."""

from __future__ import annotations

import pathlib

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

import sample_messages
from node_harness import spin_until

PUBLISHER = pathlib.Path(__file__).with_name("dds_publisher.py")


@pytest.fixture(scope="module")
def received(request):
    """Start the publisher process, subscribe to everything, collect one of each."""
    import os
    import subprocess
    import sys

    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    proc = subprocess.Popen([sys.executable, str(PUBLISHER)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    context = Context()
    rclpy.init(context=context)
    node = Node("dds_sample_subscriber", context=context)
    got = {}
    try:
        assert proc.stdout.readline().strip() == "publisher ready", "publisher did not start"
        for topic, (msg_type, _, latched) in sample_messages.SAMPLES.items():
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE) if latched else 10
            node.create_subscription(msg_type, topic, lambda m, t=topic: got.setdefault(t, m), qos)
        node.create_subscription(sample_messages.Image, sample_messages.BEST_EFFORT_TOPIC,
                                 lambda m: got.setdefault("best_effort", m), qos_profile_sensor_data)
        wanted = set(sample_messages.SAMPLES) | {"best_effort"}
        spin_until(node, lambda: wanted <= set(got), timeout=30.0, context=context)
        yield got
    finally:
        node.destroy_node()
        context.try_shutdown()
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.parametrize("topic", list(sample_messages.SAMPLES))
def test_message_round_trip(received, topic):
    assert topic in received, f"nothing arrived on {topic} within 30 s (got: {sorted(received)})"
    _, factory, _ = sample_messages.SAMPLES[topic]
    # generated messages compare field by field, nested messages and arrays included
    assert received[topic] == factory()


def test_tf_static_reaches_a_late_joiner(received):
    # /tf_static was published once, before this process subscribed: only
    # transient-local durability on both ends delivers it.
    assert received["/tf_static"].transforms[0].header.frame_id == "camera_link"


def test_best_effort_publisher_reaches_best_effort_subscriber(received):
    assert "best_effort" in received, "a best-effort subscriber got nothing from a best-effort publisher"
    assert received["best_effort"] == sample_messages.image()
