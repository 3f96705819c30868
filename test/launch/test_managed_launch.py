"""live.launch.py managed:=true (launch_testing): the lifecycle node `da3_managed_node`
is brought up through configure and activate by the launch file's lifecycle
events, then answers the camera as da3_node does (the same checks on its
messages, and a clean exit)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))  # `launch_test FILE` does not add it
from launch_harness import NO_LAUNCH, launch_file, write_params

pytest.importorskip("launch_ros", reason=NO_LAUNCH)  # first: the repo's launch/ folder imports as `launch`
launch_testing = pytest.importorskip("launch_testing", reason=NO_LAUNCH)

import launch_testing.actions  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

# the same checks on the messages and on the exit as for the plain node
from test_live_launch import (CAMERA_NS, NAMESPACE, SCRATCH, TestLiveLaunchAnswersTheCamera,  # noqa: E402,F401
                              TestLiveLaunchShutdown)


@pytest.mark.launch_test
def generate_test_description():
    live = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file("live.launch.py")),
        launch_arguments={"namespace": NAMESPACE.strip("/"), "model": "random:da3-small", "managed": "true",
                          "image": f"{CAMERA_NS}/image", "camera_info": f"{CAMERA_NS}/camera_info",
                          "params_file": write_params(pathlib.Path(SCRATCH.name)), "rviz": "false"}.items(),
    )
    return LaunchDescription([live, launch_testing.actions.ReadyToTest()]), {}
