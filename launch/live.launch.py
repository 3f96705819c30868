"""Live depth and poses from a camera (or a rig of cameras):

    ros2 launch da3_ros live.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info rviz:=true
    ros2 launch da3_ros live.launch.py cameras:="[left, right]" base_frame:=base_link
    ros2 launch da3_ros live.launch.py managed:=true   # a lifecycle node, driven to active here
"""

import os
import tempfile

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

# (name, default, description): README.md's table is checked against this list
ARGUMENTS = [
    ("namespace", "da3", "namespace of the node and its topics"),
    ("model", "", "checkpoint: a hub id, a directory, `random:<variant>`; empty: params_file's"),
    ("image", "/camera/color/image_raw", "sensor_msgs/Image topic (or the base of `<image>/compressed`)"),
    ("camera_info", "/camera/color/camera_info", "sensor_msgs/CameraInfo topic"),
    ("compressed", "false", "subscribe to `<image>/compressed` (JPEG/PNG) instead of raw images"),
    ("cameras", "", "a rig: camera names, e.g. `[left, right]` (topics `<camera>/image`, `<camera>/camera_info` in "
                    "the namespace; `image` and `camera_info` are then unused); empty: one camera"),
    ("base_frame", "", "the robot's (rig's) base frame, e.g. `base_link`: TF and odometry for it, extrinsics "
                       "from /tf_static; empty: params_file's"),
    ("managed", "false", "start the managed (lifecycle) node `da3_managed_node` and drive it through configure "
                         "and activate"),
    ("params_file", "", "extra parameter file, applied after `config/live.yaml`"),
    ("use_sim_time", "false", "use /clock (bag replay)"),
    ("rviz", "false", "start RViz with `rviz/da3.rviz` (where rviz2 is not installed: a warning, and no RViz)"),
]


def camera_list(text: str) -> list:
    """`[left, right]` or `left,right` -> ["left", "right"]."""
    return [name.strip().strip("'\"") for name in text.strip().strip("[]").split(",") if name.strip()]


def rviz_config_for(namespace: str) -> tuple:
    """(RViz config path, whether it is a temporary file): rviz/da3.rviz names the node's
    topics under /da3; for another namespace a rewritten copy, removed at shutdown."""
    share = get_package_share_directory("da3_ros")
    config = os.path.join(share, "rviz", "da3.rviz")
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if ns == "/da3":
        return config, False
    with open(config) as f:
        text = f.read().replace("/da3/", ns + "/")
    fd, path = tempfile.mkstemp(prefix="da3_", suffix=".rviz")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path, True


def rviz_installed() -> bool:
    """Whether the rviz2 package is installed (pip-only machines have none)."""
    try:
        get_package_prefix("rviz2")
        return True
    except PackageNotFoundError:
        return False


def remove_file(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


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
    if get("base_frame"):
        overrides["base_frame"] = get("base_frame")
    cameras = camera_list(get("cameras"))
    if cameras:
        overrides["cameras"] = cameras
    params.append(overrides)
    image = get("image")
    remappings = [] if cameras else [("image", image), ("image/compressed", image + "/compressed"),
                                     ("camera_info", get("camera_info"))]
    managed = get("managed").lower() == "true"
    kind = LifecycleNode if managed else Node
    node = kind(
        package="da3_ros", executable="da3_managed_node" if managed else "da3_node", name="da3_node",
        namespace=get("namespace"), output="screen", emulate_tty=True, parameters=params, remappings=remappings,
    )
    actions = [node]
    if managed:
        # start-up only: configure (loads the model), and when THAT transition ends in
        # inactive, activate. A later deactivate also ends in inactive (from
        # "deactivating"): it must stay there, so `ros2 lifecycle set` keeps control.
        actions += [
            RegisterEventHandler(OnStateTransition(
                target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
                entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                                      transition_id=Transition.TRANSITION_ACTIVATE))])),
            EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                        transition_id=Transition.TRANSITION_CONFIGURE)),
        ]
    if get("rviz").lower() == "true":
        if not rviz_installed():  # pip-only machines: the node is what matters, RViz is a viewer
            actions.append(LogInfo(msg="WARNING: rviz:=true, but rviz2 is not installed here (no package rviz2): "
                                       "going on without RViz (install ros-$ROS_DISTRO-rviz2, or pass rviz:=false)"))
        else:
            config, temporary = rviz_config_for(get("namespace"))
            actions.append(Node(
                package="rviz2", executable="rviz2", name="rviz2", output="log", arguments=["-d", config],
                parameters=[{"use_sim_time": overrides["use_sim_time"]}],
            ))
            if temporary:  # removed when the launch ends, however it ends
                actions.append(RegisterEventHandler(OnShutdown(on_shutdown=lambda *_: remove_file(config))))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS]
        + [OpaqueFunction(function=launch_setup)]
    )
