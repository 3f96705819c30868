"""What the launch tests share: the skip reason, the DDS sandbox, the launch
files as installed, a parameter file for a small random-weight DA3 on the CPU,
and a camera bag.

The launch_testing modules run under pytest (launch_testing's plugin) or
`launch_test FILE`; the latter loads no conftest.py, so the sandbox is set here
too. This module imports no launch package: it is imported before the skip.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Dict, List

NO_LAUNCH = ("ROS 2's launch packages (launch, launch_ros, launch_testing) are not installed here: "
             "pip wheels of ROS 2 have none; these tests run where they are")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "test" / "ros"))  # node_harness: the camera and the recorder

#: camera images of the launch tests: small, and the network's input at process_res 70
WIDTH, HEIGHT = 64, 48


def sandbox_dds() -> None:
    """test/conftest.py's loopback DDS, for runs that do not load it (`launch_test FILE`).
    Every process a launch starts inherits it."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ["HF_HUB_OFFLINE"] = "1"


def launch_file(name: str) -> str:
    """The launch file as `ros2 launch da3_ros <name>` finds it (the install, not the source tree)."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory("da3_ros"), "launch", name)


def write_params(directory: pathlib.Path, **extra) -> str:
    """A params_file for a random-weight DA3-small on the CPU, fast on two cores: any depth
    scale is as good as another with random weights, so no depth or confidence is cut."""
    import yaml

    params: Dict[str, object] = dict(device="cpu", precision="fp32", process_res=70, window_size=3,
                                     min_confidence=0.0, min_depth=0.0, max_depth=1000.0,
                                     warmup_width=WIDTH, warmup_height=HEIGHT, diagnostics_period=0.5)
    params.update(extra)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    return str(path)


def write_camera_bag(path: pathlib.Path, seq, stamps_s, image_topic: str, info_topic: str, frame_id: str) -> List[int]:
    """A sqlite3 bag of metadata version 8 (what every distro's `ros2 bag play` reads, Humble
    included): CameraInfo and an rgb8 image of `seq` per stamp (seconds), each received 3 ms
    after its stamp. Returns the image stamps (ns)."""
    from da3_ros.io import bags

    ts = bags.get_typestore("humble")
    stamps = []
    with bags.open_writer(path, storage="sqlite3", version=8) as writer:
        img = bags.add_topic(writer, image_topic, bags.IMAGE, ts)
        info = bags.add_topic(writer, info_topic, bags.CAMERA_INFO, ts)
        for rgb, t in zip(seq.images, stamps_s):
            msg = bags.image_msg(ts, rgb, "rgb8", float(t), frame_id)
            stamp = bags.stamp_to_ns(msg.header.stamp)
            received = stamp + 3_000_000
            writer.write(info, received - 1, bags.serialize(ts, bags.camera_info_msg(
                ts, seq.intrinsics, seq.width, seq.height, float(t), frame_id)))
            writer.write(img, received, bags.serialize(ts, msg))
            stamps.append(stamp)
    return stamps


def all_output(proc_output) -> str:
    """Every line the launched processes wrote (launch_testing's IoHandler)."""
    return "".join(io.text.decode(errors="replace") for io in proc_output)
