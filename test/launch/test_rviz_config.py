"""live.launch.py's RViz set-up (needs ROS 2's launch to import the file): the
default namespace uses the installed rviz/da3.rviz as it is (no temporary file);
another namespace gets a rewritten copy the launch removes at shutdown; where
rviz2 is not installed, rviz:=true is a warning and the launch goes on (run as
written by test/test_readme_commands.py's replay.launch.py, whose default is
rviz:=true)."""

from __future__ import annotations

import glob
import importlib.util
import os
import pathlib
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from launch_harness import NO_LAUNCH, launch_file

pytest.importorskip("launch_ros", reason=NO_LAUNCH)


def live_launch_module():
    spec = importlib.util.spec_from_file_location("live_launch", launch_file("live.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rviz_config_is_temporary_only_for_another_namespace():
    live = live_launch_module()
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "da3_*.rviz")))
    path, temporary = live.rviz_config_for("da3")
    assert not temporary and path.endswith(os.path.join("share", "da3_ros", "rviz", "da3.rviz"))
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "da3_*.rviz"))) == before
    path, temporary = live.rviz_config_for("/robot1/da3")
    try:
        text = pathlib.Path(path).read_text()
        assert temporary and "Value: /robot1/da3/depth/image" in text and "Value: /da3/" not in text
    finally:
        live.remove_file(path)
    assert not os.path.exists(path)
    live.remove_file(path)  # twice: no error (the launch may end after someone removed it)
