"""Publisher half of the DDS round-trip test, run as its own process.

Publishes every sample of sample_messages.py a few times a second (reliable,
and /tf_static once with transient-local durability, as tf2 does), plus an
image with sensor-data (best-effort) QoS, until interrupted.
"""

import os
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sample_messages  # noqa: E402


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("dds_sample_publisher")
    publishers = []
    for topic, (msg_type, factory, latched) in sample_messages.SAMPLES.items():
        if latched:
            qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
            node.create_publisher(msg_type, topic, qos).publish(factory())
            publishers.append(None)  # published once; late joiners still get it
        else:
            publishers.append((node.create_publisher(msg_type, topic, 10), factory))
    best_effort = node.create_publisher(sample_messages.Image, sample_messages.BEST_EFFORT_TOPIC,
                                        qos_profile_sensor_data)

    def tick():
        for entry in publishers:
            if entry is not None:
                entry[0].publish(entry[1]())
        best_effort.publish(sample_messages.image())

    node.create_timer(0.2, tick)
    print("publisher ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
