"""da3_node's parameters: the settings table (`da3_ros.stream.settings`, where
each is declared once) as ROS parameters with descriptors, and the typed
mapping from the values to their consumers (streaming core, model, builder).

`config/live.yaml` lists the same names with comments; a test checks that the two
agree. Units are in the names or descriptions (metres, seconds, pixels, degrees).
"""

from __future__ import annotations

from typing import Dict

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from da3_ros.ros.outputs import OUTPUTS, OutputOptions
from da3_ros.runtime.models import model_settings  # noqa: F401 - the model's part of the mapping
from da3_ros.stream.config import StreamConfig
from da3_ros.stream.settings import SETTINGS, Setting, Settings, check_value, readme_rows, settings
from da3_ros.stream.settings import validate as validate_settings

#: the publish_* parameters, from the output table
OUTPUT_SWITCHES = tuple(dict.fromkeys(o.switch for o in OUTPUTS if o.switch))


#: the node's parameters: every setting of the one table, with its descriptor
PARAMETERS: Dict[str, Setting] = SETTINGS
#: the parameters as typed Python values (names as in PARAMETERS)
NodeConfig = Settings


def _descriptor(name: str, spec: Setting) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=spec.description, read_only=not spec.runtime)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        lo, hi, step = spec.range
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=int(step))]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=float(step))]
    return desc


def declare_parameters(node: Node) -> NodeConfig:
    """Declare every parameter on `node` and return their values.

    Raises ValueError naming the parameter when a value is not one of its
    choices or outside its range (rclpy enforces ranges on set, not on the
    initial value from a params file)."""
    values = {}
    for name, spec in PARAMETERS.items():
        if isinstance(spec.default, list):  # rclpy cannot type an empty list: declare the type
            value = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, _descriptor(name, spec)).value
            value = list(value or [])
        else:
            value = node.declare_parameter(name, spec.default, _descriptor(name, spec)).value
        check_value(name, value)
        values[name] = value
    cfg = NodeConfig(**values)
    validate(cfg)
    return cfg


# ---------------------------------------------------------------- the typed mapping
# Every parameter reaches its consumer here, by name, with no defaults: a
# parameter added to NodeConfig and forgotten below fails the reach test
# (test/ros/test_params.py), and a renamed one fails to run at all.


def stream_config(cfg: NodeConfig) -> StreamConfig:
    """The streaming core's configuration: its settings by name; the map is fed
    only while publish_map is on."""
    return StreamConfig.from_settings(cfg, map_from="keyframes" if cfg.publish_map else "none")


def output_options(cfg: NodeConfig) -> OutputOptions:
    """What the message builder needs: frames, decimation, path length, switches."""
    return OutputOptions(
        world_frame=cfg.world_frame, base_frame=cfg.base_frame, point_decimation=cfg.point_decimation,
        path_max_length=cfg.path_max_length,
        switches={name: getattr(cfg, name) for name in OUTPUT_SWITCHES},
    )


def validate(cfg: NodeConfig) -> None:
    """Raise ValueError (naming the parameters) when values that are each in
    range do not fit together (min_depth >= max_depth, ...)."""
    validate_settings(cfg)
    stream_config(cfg)  # and whatever else the streaming core checks


def default_config(**overrides) -> NodeConfig:
    """The node's configuration without a node (process-bag, tests): defaults,
    then `overrides` by name."""
    cfg = settings(**overrides)
    stream_config(cfg)
    return cfg


if __name__ == "__main__":
    print("\n".join(readme_rows()))
