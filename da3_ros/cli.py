"""`da3_ros <command> ...`: one entry point for the offline tools.

Each command lives in its own module and is imported only when it is run, so
`da3_ros run-offline` never imports rclpy and `da3_ros replay` never imports torch
before it needs it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Dict, Sequence, Tuple

from .signals import install_signal_handlers
from .usage import USAGE_EXIT, UsageError

# command -> (module, function taking argv, one-line help)
COMMANDS: Dict[str, Tuple[str, str, str]] = {
    "run-offline": ("da3_ros.runtime.offline", "main", "run the pipeline on images, a video or a bag; write depth, map, trajectory"),
    "replay": ("da3_ros.ros.replay", "main", "publish a rosbag2 (sqlite3 or MCAP) over DDS with /clock"),
    "process-bag": ("da3_ros.ros.process_bag", "main", "run the node's pipeline on a bag without DDS; write an output bag"),
    "bench": ("da3_ros.bench", "main", "GPU benchmark: incremental path vs the official network"),
    "bench-node": ("da3_ros.ros.node_bench", "main", "the real node end to end over loopback DDS: FPS, latency, stages"),
    "export-onnx": ("da3_ros.model.export", "main", "export the window network to ONNX for TensorRT"),
    "demo": ("da3_ros.ros.demo", "main", "the live node on a synthetic sequence over DDS; writes demo_output/"),
}


def _usage() -> str:
    lines = ["usage: da3_ros <command> [args]", "", "commands:"]
    for name, (_, _, text) in COMMANDS.items():
        lines.append(f"  {name:<12} {text}")
    return "\n".join(lines)


def _commands() -> str:
    names = list(COMMANDS)
    return ", ".join(names[:-1]) + " or " + names[-1]


def main(argv: Sequence[str] | None = None) -> int:
    install_signal_handlers()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if not argv:  # a usage error like any other: one line on stderr, exit 2
        print(f"da3_ros: give a command: {_commands()} (da3_ros --help)", file=sys.stderr)
        return USAGE_EXIT
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"da3_ros: unknown command {name!r}: {_commands()} (da3_ros --help)", file=sys.stderr)
        return USAGE_EXIT
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"da3_ros: command {name!r} is not available in this build ({module_name} missing)", file=sys.stderr)
            return USAGE_EXIT
        raise
    try:
        return int(getattr(module, func_name)(rest) or 0)
    except UsageError as exc:  # a command without its own one_line_errors
        print(f"da3_ros {name}: {exc}", file=sys.stderr)
        return USAGE_EXIT


if __name__ == "__main__":
    sys.exit(main())
