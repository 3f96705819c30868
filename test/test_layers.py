"""Imports point one way: model and geometry at the bottom, stream above them,
ros (the only rclpy user) on top. Checked on the source text, so a lazy import
inside a function counts too."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "da3_ros"
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "tf2_msgs", "diagnostic_msgs",
               "std_srvs", "rosgraph_msgs", "builtin_interfaces", "da3_ros.msg")
#: the command-line layer sits beside ros, above every other layer
ENTRY_POINTS = ("da3_ros.cli", "da3_ros.bench")
# layer -> what it must never import
FORBIDDEN = {
    "model": ("da3_ros.stream", "da3_ros.ros", "da3_ros.io", "da3_ros.synthetic", "da3_ros.train") + ENTRY_POINTS + ROS_MODULES,
    "geometry": ("da3_ros.stream", "da3_ros.ros", "da3_ros.model", "torch") + ENTRY_POINTS + ROS_MODULES,
    "io": ("da3_ros.stream", "da3_ros.ros", "da3_ros.model", "torch") + ENTRY_POINTS + ROS_MODULES,
    "stream": ("da3_ros.ros",) + ENTRY_POINTS + ROS_MODULES,
    "synthetic": ("da3_ros.ros",) + ENTRY_POINTS + ROS_MODULES,
    "train": ("da3_ros.ros",) + ENTRY_POINTS + ROS_MODULES,
}


def imported_modules(path: pathlib.Path):
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                yield ".".join(base + ([node.module] if node.module else []))
            else:
                yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    assert not bad, "\n".join(bad)
