"""A camera process for test_large_images: N 640x480 rgb8 images at 30 Hz with
sensor-data (best-effort) QoS, as camera drivers publish, after waiting for a
subscriber. Its Fast DDS profile is whatever the environment says."""

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main(n: int) -> None:
    rclpy.init()
    node = rclpy.create_node("camera_burst")
    pub = node.create_publisher(Image, "burst/image", qos_profile_sensor_data)
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the subscriber's side of discovery
    data = np.random.default_rng(0).integers(0, 255, 640 * 480 * 3, dtype=np.uint8).tobytes()
    t0 = time.monotonic()
    for k in range(n):
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=data)
        msg.header.frame_id = str(k)
        pub.publish(msg)
        time.sleep(max(0.0, t0 + (k + 1) / 30.0 - time.monotonic()))
    time.sleep(1.0)  # let the last samples leave
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
