"""DDS settings of the project's own tools (bench-node, the demo): loopback only, a
domain of their own, and shared memory large enough for camera-sized messages.
The node itself sets none of these: a robot needs network discovery."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, MutableMapping

#: Fast DDS profile with a 32 MB shared-memory segment and UDP on 127.0.0.1 only
#: (config/fastdds_large_images.xml explains why images need it)
LOOPBACK_PROFILE = "fastdds_large_images_loopback.xml"


def config_file(name: str) -> Path:
    """A file of the package's config/ folder: the installed share, else the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("da3_ros")) / "config" / name
        if installed.is_file():
            return installed
    except Exception:  # not installed with colcon (a source checkout on PYTHONPATH)
        pass
    return Path(__file__).resolve().parents[2] / "config" / name


def loopback_env(domain_id) -> Dict[str, str]:
    """Environment variables that keep DDS on this host, in `domain_id`, with the
    large-image profile unless the caller chose a Fast DDS profile of their own."""
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOCALHOST_ONLY": "1", "ROS_DOMAIN_ID": str(domain_id)}
    if not os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE") and not os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(config_file(LOOPBACK_PROFILE))
    return env


def keep_on_loopback(environ: MutableMapping[str, str], domain_id) -> MutableMapping[str, str]:
    """`loopback_env(domain_id)` set in `environ` (os.environ before rclpy starts, or a
    child's copy), and no ROS_STATIC_PEERS (static peers reach beyond this host); returns it."""
    environ.update(loopback_env(domain_id))
    environ.pop("ROS_STATIC_PEERS", None)
    return environ
