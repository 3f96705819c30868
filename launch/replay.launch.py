"""Replay a recorded bag through da3_node on sim time, with RViz:

    ros2 launch da3_ros replay.launch.py bag:=/data/my_bag image:=/camera/color/image_raw

The bag must hold /tf_static if base_frame is used. `ros2 bag play --clock`
publishes /clock; the node runs with use_sim_time:=true, so every output keeps
the recorded stamps.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def launch_setup(context):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    share = get_package_share_directory("da3_ros")
    live = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "live.launch.py")),
        launch_arguments={"namespace": get("namespace"), "model": get("model"), "image": get("image"),
                          "camera_info": get("camera_info"), "compressed": get("compressed"),
                          "params_file": get("params_file"), "use_sim_time": "true", "rviz": get("rviz")}.items(),
    )
    play = ["ros2", "bag", "play", get("bag"), "--clock", "--rate", get("rate")]
    if get("loop").lower() == "true":
        play.append("--loop")  # the node resets its world when time jumps back
    return [live, ExecuteProcess(cmd=play, output="screen")]


def generate_launch_description():
    args = [
        ("bag", "", "rosbag2 directory or file (sqlite3 or MCAP)"),
        ("rate", "1.0", "playback rate"),
        ("loop", "false", "replay in a loop"),
        ("namespace", "da3", "namespace of the node"),
        ("model", "", "checkpoint; empty: config/live.yaml's"),
        ("image", "/camera/color/image_raw", "image topic in the bag"),
        ("camera_info", "/camera/color/camera_info", "camera info topic in the bag"),
        ("compressed", "false", "the bag holds <image>/compressed"),
        ("params_file", "", "extra parameter file"),
        ("rviz", "true", "start RViz"),
    ]
    return LaunchDescription([DeclareLaunchArgument(n, default_value=d, description=t) for n, d, t in args]
                             + [OpaqueFunction(function=launch_setup)])
