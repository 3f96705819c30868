"""replay.launch.py's player: which one runs, with which flags, and what a
player that fails does to the launch. Real launch services run the installed
launch file; skipped where ROS 2's launch is not installed.
"""

from __future__ import annotations

import importlib.util
import shutil
import threading

import pytest

from launch_harness import NO_LAUNCH, launch_file, sandbox_dds

pytest.importorskip("launch_ros", reason=NO_LAUNCH)  # first: the repo's launch/ folder imports as `launch`
sandbox_dds()

from launch import LaunchDescription, LaunchService  # noqa: E402
from launch.actions import IncludeLaunchDescription, RegisterEventHandler  # noqa: E402
from launch.event_handlers import OnProcessExit, OnProcessStart, OnShutdown  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from da3_ros.ros.replay import parse_args  # noqa: E402

WATCHDOG_S = 120.0


@pytest.fixture(scope="module")
def replay_launch():
    """replay.launch.py as a module, for its player rules."""
    spec = importlib.util.spec_from_file_location("replay_launch", launch_file("replay.launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auto_picks_ros2_bag_only_where_it_exists(replay_launch):
    here = bool(shutil.which("ros2")) and importlib.util.find_spec("ros2bag") is not None
    player, why = replay_launch.choose_player("auto")
    assert player == ("ros2bag" if here else "da3_ros"), why
    assert replay_launch.choose_player("da3_ros")[0] == "da3_ros"
    with pytest.raises(ValueError, match="choose one of"):
        replay_launch.choose_player("rosbag")
    if not here:
        with pytest.raises(ValueError, match="player:=ros2bag, but"):
            replay_launch.choose_player("ros2bag")


def test_both_players_get_the_same_playback(replay_launch):
    flags = replay_launch.player_flags
    assert flags("ros2bag", "0.5", True, True, 2.0) == ["--rate", "0.5", "--loop", "--clock", "--delay", "2.0"]
    assert flags("ros2bag", "1.0", False, False, 0.0) == ["--rate", "1.0"]
    # da3_ros replay takes what the launch file gives it, with the same meaning
    args = parse_args(["bag"] + flags("da3_ros", "0.5", True, True, 2.0))
    assert (args.rate, args.loop, args.no_clock, args.delay) == (0.5, True, False, 2.0)
    args = parse_args(["bag"] + flags("da3_ros", "1.0", False, False, 0.0))
    assert (args.rate, args.loop, args.no_clock, args.delay) == (1.0, False, True, 0.0)


def run_replay_launch(**arguments):
    """Run replay.launch.py until it stops by itself (a watchdog stops it after WATCHDOG_S,
    which shows as the first shutdown reason).
    -> (return code, shutdown reasons, {process name: exit code}, started process names)"""
    reasons, exits, started = [], {}, []
    description = LaunchDescription([
        RegisterEventHandler(OnShutdown(on_shutdown=lambda event, _: reasons.append(event.reason))),
        RegisterEventHandler(OnProcessStart(on_start=lambda event, _: started.append(event.process_name))),
        RegisterEventHandler(OnProcessExit(on_exit=lambda event, _: exits.update({event.process_name:
                                                                                   event.returncode}))),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(launch_file("replay.launch.py")),
                                 launch_arguments={"rviz": "false", **arguments}.items()),
    ])
    service = LaunchService()
    service.include_launch_description(description)
    watchdog = threading.Timer(WATCHDOG_S, service.shutdown)
    watchdog.start()
    try:
        code = service.run()
    finally:
        watchdog.cancel()
    return code, reasons, exits, started


def test_a_player_that_fails_shuts_the_launch_down_with_the_reason(tmp_path):
    code, reasons, exits, started = run_replay_launch(bag=str(tmp_path / "no_such_bag"), player="da3_ros")
    players = {name: rc for name, rc in exits.items() if name.startswith("player")}
    assert players and all(rc == 2 for rc in players.values()), exits  # da3_ros replay: not a bag
    assert reasons and "the player" in reasons[0] and "exited with code 2" in reasons[0], reasons
    assert any(name.startswith("da3_node") for name in started), started
    assert set(started) == set(exits), f"left running: {set(started) - set(exits)}"


def test_ros2bag_where_rosbag2_is_missing_fails_before_anything_starts():
    if shutil.which("ros2") and importlib.util.find_spec("ros2bag") is not None:
        pytest.skip("rosbag2's `ros2 bag` is installed here")
    code, reasons, exits, started = run_replay_launch(bag="/nonexistent", player="ros2bag")
    assert code != 0
    assert reasons and "player:=ros2bag, but" in reasons[0], reasons
    assert started == [], started
