"""Every setting has one name and one default in every front end: the node's
declared parameters (and their descriptors), process-bag's -p, run-offline's
flags (`--window-size` for `window_size`), the streaming core's StreamConfig,
the model's ModelSettings and the README's parameter table."""

from __future__ import annotations

import dataclasses

import pytest
from rcl_interfaces.msg import ParameterType

from da3_ros.ros.process_bag import UsageError, config_from, parse_parameter
from da3_ros.runtime import offline
from da3_ros.runtime.models import ModelSettings
from da3_ros.stream.config import StreamConfig
from da3_ros.stream.settings import NODE, SETTINGS, flag, offline_names, readme_rows


def _default(name):
    return SETTINGS[name].default


def _text(value) -> str:
    """A value as a user types it after -p name:= or --flag."""
    if isinstance(value, list):
        return "[" + ",".join(value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_node_declares_every_setting_with_its_default_and_descriptor(ros_context):
    from da3_ros.ros.node import Da3Node
    from da3_ros.synthetic.oracle import OracleModel
    from da3_ros.synthetic.sequence import make_sequence

    node = Da3Node(model=OracleModel(make_sequence("forward", n_frames=2, width=32, height=24)), context=ros_context)
    try:
        declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}  # rclpy's own
        assert declared == set(SETTINGS), declared ^ set(SETTINGS)
        for name, spec in SETTINGS.items():
            (desc,) = node.describe_parameters([name])
            if spec.type is list:  # rclpy cannot hold an empty list's type: declared typed, unset, read as []
                assert desc.type == ParameterType.PARAMETER_STRING_ARRAY and getattr(node.cfg, name) == [], name
            else:
                assert node.get_parameter(name).value == spec.default, name
            assert desc.read_only == (not spec.runtime), name
            assert desc.description == spec.description, name
            if spec.range is not None:
                ranges = desc.integer_range or desc.floating_point_range
                assert (ranges[0].from_value, ranges[0].to_value) == pytest.approx(spec.range[:2]), name
    finally:
        node.destroy_node()


def test_process_bag_takes_every_setting_by_name_with_its_default():
    cfg = config_from([])
    for name, spec in SETTINGS.items():
        assert getattr(cfg, name) == spec.default, name
        assert parse_parameter(f"{name}:={_text(spec.default)}") == (name, spec.default), name
    with pytest.raises(UsageError, match="window"):
        parse_parameter("window:=8")  # one name per setting: no alias


def test_run_offline_has_a_flag_per_setting_with_its_default():
    parser = offline.build_parser()
    options = {a.dest: a for a in parser._actions if a.option_strings}
    for name in offline_names():
        action = options.get(name)
        assert action is not None and action.option_strings == [flag(name)], name
        assert action.default == SETTINGS[name].default, name
        args = parser.parse_args(["--input", "x", "--out", "y", flag(name), _text(SETTINGS[name].default)])
        assert getattr(args, name) == SETTINGS[name].default, name
    # the ROS-only settings (topics, frames, QoS, publishing) are not flags
    assert {n for n, s in SETTINGS.items() if s.scope == NODE} & set(options) == set()
    assert "--window" not in parser._option_string_actions


def test_core_and_model_defaults_are_the_table_s():
    """StreamConfig and ModelSettings fields of a setting's name default to it."""
    shared = 0
    for cls in (StreamConfig, ModelSettings):
        for f in dataclasses.fields(cls):
            if f.name in SETTINGS:
                expected = _default(f.name)
                if (cls, f.name) == (ModelSettings, "process_res"):  # the setting's default stands for
                    expected = None  # "the checkpoint's own size" (model_settings maps it)
                assert f.default == (tuple(expected) if isinstance(expected, list) else expected), (cls, f.name)
                shared += 1
    assert shared >= 25


def test_readme_lists_every_setting_with_its_default(repo_root):
    text = (repo_root / "README.md").read_text().splitlines()
    missing = [row for row in readme_rows() if row not in text]
    assert not missing, "README.md parameter table differs (regenerate: python -m da3_ros.stream.settings):\n" + \
        "\n".join(missing)
