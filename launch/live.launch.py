"""Live depth and poses from a camera:

    ros2 launch da3_ros live.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info rviz:=true
"""

import os
import tempfile

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# (name, default, description): README.md's table is checked against this list
ARGUMENTS = [
    ("namespace", "da3", "namespace of the node and its topics"),
    ("model", "", "checkpoint: a hub id, a directory, `random:<variant>`; empty: params_file's"),
    ("image", "/camera/color/image_raw", "sensor_msgs/Image topic (or the base of `<image>/compressed`)"),
    ("camera_info", "/camera/color/camera_info", "sensor_msgs/CameraInfo topic"),
    ("compressed", "false", "subscribe to `<image>/compressed` (JPEG/PNG) instead of raw images"),
    ("params_file", "", "extra parameter file, applied after `config/live.yaml`"),
    ("use_sim_time", "false", "use /clock (bag replay)"),
    ("rviz", "false", "start RViz with `rviz/da3.rviz`"),
]


def rviz_config_for(namespace: str) -> str:
    """rviz/da3.rviz names the node's topics under /da3; rewrite them for another namespace."""
    share = get_package_share_directory("da3_ros")
    with open(os.path.join(share, "rviz", "da3.rviz")) as f:
        text = f.read()
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    text = text.replace("/da3/", ns + "/")
    fd, path = tempfile.mkstemp(prefix="da3_", suffix=".rviz")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def launch_setup(context):
    share = get_package_share_directory("da3_ros")
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    params = [os.path.join(share, "config", "live.yaml")]
    if get("params_file"):
        params.append(get("params_file"))
    overrides = {"use_sim_time": get("use_sim_time").lower() == "true",
                 "use_compressed": get("compressed").lower() == "true"}
    if get("model"):
        overrides["model"] = get("model")
    params.append(overrides)
    image = get("image")
    node = Node(
        package="da3_ros", executable="da3_node", name="da3_node", namespace=get("namespace"),
        output="screen", emulate_tty=True, parameters=params,
        remappings=[("image", image), ("image/compressed", image + "/compressed"),
                    ("camera_info", get("camera_info"))],
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2", output="log",
        arguments=["-d", rviz_config_for(get("namespace"))],
        parameters=[{"use_sim_time": overrides["use_sim_time"]}],
        condition=IfCondition(get("rviz")),
    )
    return [node, rviz]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)]
    )
