"""Camera-sized images over DDS, best effort (REP 2003's sensor-data QoS): with
Fast DDS's default 512 KB shared-memory segment a 640x480 rgb8 image (921,600
bytes) goes over UDP in fragments, and a best-effort reader loses every image a
dropped fragment belongs to; config/fastdds_large_images.xml gives the
publisher a segment that holds it. The profile must deliver (almost) every
image. (Without it the same burst lost 60 of 60 images on the 2-core development
box, 177 of 180 at 30 Hz in a longer run; how many a quiet machine loses varies, so
that is recorded in docs/benchmarks.md, not asserted.)"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from node_harness import spin_until

CAMERA = pathlib.Path(__file__).with_name("camera_burst.py")
N = 60


def burst(repo_root, profile):
    """Images of one burst received by a best-effort subscriber in this process."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    if os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        pytest.skip("the profile is Fast DDS's; this run uses " + os.environ["RMW_IMPLEMENTATION"])
    env = dict(os.environ)
    env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(repo_root / "config" / profile)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("large_image_reader", context=ctx)
    got = set()
    node.create_subscription(Image, "burst/image", lambda m: got.add(int(m.header.frame_id)), qos_profile_sensor_data)
    camera = subprocess.Popen([sys.executable, str(CAMERA), str(N)], env=env)
    try:
        spin_until(node, lambda: camera.poll() is not None, 40.0, ctx)
        spin_until(node, lambda: False, 0.5, ctx)
        assert camera.wait(timeout=5) == 0
    finally:
        if camera.poll() is None:
            camera.kill()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
    return got


@pytest.mark.parametrize("profile", ["fastdds_large_images.xml", "fastdds_large_images_loopback.xml"])
def test_shipped_profile_delivers_camera_sized_images_best_effort(repo_root, profile):
    got = burst(repo_root, profile)
    assert got <= set(range(N)) and got, f"no image arrived with {profile}"
    # best effort drops what is sent before the reader has matched the writer (discovery
    # still settling on a loaded machine); from the first image that arrived on, shared
    # memory has no fragment to lose: allow one image in 20 for a starved scheduler
    first = min(got)
    assert first < N // 2, f"the first image to arrive was #{first} of {N} with {profile}"
    sent = N - first
    missing = sorted(set(range(first, N)) - got)
    assert len(got) >= sent - sent // 20, f"{len(got)} of the {sent} images from #{first} on arrived with {profile}; " \
                                          f"missing {missing}"

