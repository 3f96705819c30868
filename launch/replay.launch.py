"""Replay a recorded bag through da3_node on sim time, with RViz:

    ros2 launch da3_ros replay.launch.py bag:=/data/my_bag image:=/camera/color/image_raw

The player is `ros2 bag play` where rosbag2 is installed, else `da3_ros replay`
(pure Python: MCAP or sqlite3 bags, no rosbag2 needed); player:=ros2bag or
player:=da3_ros picks one, and the choice is logged. With clock:=true the player
publishes /clock and the node runs on sim time, so every output keeps the
recorded stamps. A player that fails (unreadable bag, bad flag) shuts the launch
down with the reason; one that reaches the end of the bag leaves the node and
RViz up. The bag must hold /tf_static if base_frame is used.
"""

import importlib.util
import os
import shutil
from typing import List, Tuple

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler, Shutdown)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.substitutions import ExecutableInPackage

# (name, default, description): README.md's table is checked against this list
ARGUMENTS = [
    ("bag", "", "rosbag2 directory or file (sqlite3 or MCAP); required"),
    ("player", "auto",
     "`auto` (`ros2 bag play` where rosbag2 is installed, else `da3_ros replay`), `ros2bag` or `da3_ros`"),
    ("rate", "1.0", "playback rate"),
    ("loop", "false", "replay in a loop (the node resets its world when time jumps back)"),
    ("clock", "true", "the player publishes /clock and the node runs on sim time"),
    ("delay", "0.0", "seconds to wait before playing (`ros2 bag play`: before each loop), e.g. while the model loads"),
    ("namespace", "da3", "namespace of the node and its topics"),
    ("model", "", "checkpoint: a hub id, a directory, `random:<variant>`; empty: params_file's"),
    ("image", "/camera/color/image_raw", "image topic in the bag"),
    ("camera_info", "/camera/color/camera_info", "camera info topic in the bag"),
    ("compressed", "false", "the bag holds `<image>/compressed` (JPEG/PNG) instead of raw images"),
    ("cameras", "", "a rig bag: camera names, e.g. `[left, right]` (its topics `<namespace>/<camera>/image`, "
                    "`.../camera_info`); empty: one camera"),
    ("base_frame", "", "the robot's (rig's) base frame, e.g. `base_link`; the bag's /tf_static gives its extrinsics"),
    ("managed", "false", "start the managed (lifecycle) node and drive it to active"),
    ("params_file", "", "extra parameter file, applied after `config/live.yaml`"),
    ("rviz", "true", "start RViz with `rviz/da3.rviz` (where rviz2 is not installed: a warning, and no RViz)"),
]
PLAYERS = ("auto", "ros2bag", "da3_ros")


def ros2bag_available() -> Tuple[bool, str]:
    """Whether `ros2 bag play` can run here, and why (rosbag2 is C++: pip-only machines lack it)."""
    if shutil.which("ros2") is None:
        return False, "no `ros2` command on PATH"
    if importlib.util.find_spec("ros2bag") is None:
        return False, "`ros2 bag` is not installed (no ros2bag package: rosbag2 is missing)"
    return True, "rosbag2's `ros2 bag` is installed"


def choose_player(requested: str) -> Tuple[str, str]:
    """player:= value -> ("ros2bag" | "da3_ros", why). Raises ValueError for a choice that cannot run."""
    if requested not in PLAYERS:
        raise ValueError(f"player:={requested!r}: choose one of {', '.join(PLAYERS)}")
    if requested == "da3_ros":
        return "da3_ros", "player:=da3_ros"
    available, why = ros2bag_available()
    if requested == "ros2bag":
        if not available:
            raise ValueError(f"player:=ros2bag, but {why}; use player:=da3_ros (or auto)")
        return "ros2bag", "player:=ros2bag"
    return ("ros2bag" if available else "da3_ros"), f"player:=auto, {why}"


def player_flags(player: str, rate: str, loop: bool, clock: bool, delay: float) -> List[str]:
    """The same playback for both players: rate, loop, /clock, start delay."""
    flags = ["--rate", rate] + (["--loop"] if loop else [])
    if player == "ros2bag":
        flags += ["--clock"] if clock else []  # at its default rate, 40 Hz
    elif not clock:
        flags += ["--no-clock"]
    return flags + (["--delay", str(delay)] if delay > 0 else [])  # ros2 bag refuses --delay 0


def on_player_exit(event, context):
    if context.is_shutdown:
        return None  # stopped with everything else (Ctrl-C): nothing to report
    if event.returncode == 0:
        return [LogInfo(msg="replay: the player reached the end of the bag; the node stays up")]
    reason = f"replay: the player ({event.process_name}) exited with code {event.returncode}"
    return [LogInfo(msg=reason + ": shutting down"), Shutdown(reason=reason)]


def launch_setup(context):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    bag = get("bag")
    if not bag:
        raise ValueError("replay.launch.py needs bag:=<rosbag2 directory or file>")
    player, why = choose_player(get("player"))
    clock = get("clock").lower() == "true"
    flags = player_flags(player, get("rate"), get("loop").lower() == "true", clock, float(get("delay")))
    if player == "ros2bag":
        cmd = ["ros2", "bag", "play", bag] + flags
    else:
        cmd = [ExecutableInPackage(executable="da3_ros", package="da3_ros"), "replay", bag] + flags
    play = ExecuteProcess(cmd=cmd, name="player", output="screen")
    share = get_package_share_directory("da3_ros")
    live = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "live.launch.py")),
        launch_arguments={"namespace": get("namespace"), "model": get("model"), "image": get("image"),
                          "camera_info": get("camera_info"), "compressed": get("compressed"),
                          "cameras": get("cameras"), "base_frame": get("base_frame"), "managed": get("managed"),
                          "params_file": get("params_file"), "use_sim_time": str(clock).lower(),
                          "rviz": get("rviz")}.items(),
    )
    label = "ros2 bag play" if player == "ros2bag" else "da3_ros replay"
    return [LogInfo(msg=f"replay player: {label} ({why})"), live,
            RegisterEventHandler(OnProcessExit(target_action=play, on_exit=on_player_exit)), play]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)]
    )
