"""What every command-line front end shares about a user's mistake: ONE line on
stderr naming the value and what is accepted, exit code 2, no traceback.

Standard library only, so any layer's front end (run-offline, process-bag,
bench, the `da3_ros` dispatcher) can use it:

* `ArgumentParser`: argparse whose errors are one line (argparse prints its
  usage block first) and whose help shows a default only where there is one;
* value types for `add_argument(type=...)`: `int_range`, `camera_names`;
* `output_directory`: an output folder that can be written and is empty
  (unless the user said --overwrite), checked before any work;
* `UsageError` and `one_line_errors`: a front end's `main` raises UsageError
  anywhere; the decorator prints it as `prog: message` and returns 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional

#: exit code of every usage error (argparse's own)
USAGE_EXIT = 2


class UsageError(Exception):
    """A user's mistake (bad flag value, missing file, unusable folder, no GPU):
    its message is the whole line the user sees, after the command's name."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, but no "(default: None)" (nor False / empty) where an
    option has no default."""

    def _get_help_string(self, action):
        if action.default in (None, False, "", []) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors on stderr and exit code 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse's hook: usage block + message; here one line
        self.exit(USAGE_EXIT, f"{self.prog}: {message} (see --help)\n")


def one_line_errors(prog: str) -> Callable:
    """Decorator of a front end's `main(argv) -> int`: a UsageError raised inside
    becomes `prog: message` on stderr and exit code 2."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except UsageError as exc:
                print(f"{prog}: {exc}", file=sys.stderr, flush=True)
                return USAGE_EXIT

        return run

    return wrap


def int_range(low: int, high: Optional[int] = None, what: str = "") -> Callable[[str], int]:
    """argparse type: a whole number in [low, high]; the error names the range."""
    accepted = f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}"
    accepted += f" ({what})" if what else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not accepted: {accepted}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not accepted: {accepted}")
        return value

    parse.__name__ = "int_range"
    return parse


def camera_names(text: str) -> List[str]:
    """argparse type: `left,right` or `[left, right]` -> distinct, non-empty names."""
    names = [n.strip().strip("'\"") for n in text.strip().strip("[]").split(",")]
    names = [n for n in names if n]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"{text!r} names {', '.join(map(repr, twice))} twice: "
                                         "each camera once, e.g. left,right")
    return names


def output_directory(path: os.PathLike, overwrite: bool = False, option: str = "--out") -> Path:
    """Check, before any work, that `path` can take a run's outputs: an existing
    folder must be writable and empty (unless `overwrite`), a new one creatable.
    Nothing is created here. Raises UsageError with the reason."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"{option} {str(path)!r} is a file: give a folder (new, or empty)")
        if not os.access(out, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {str(path)!r} is not writable: give a folder you can write to")
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UsageError(f"{option} {str(path)!r} is not empty ({len(entries)} entries: {shown}): "
                             "give a new or empty folder, or pass --overwrite to write into it")
        return out
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    # the nearest existing folder must take new entries (root's access() says yes to
    # everything: /proc and /sys are not writable even then, so try it)
    reason = _cannot_create_in(parent)
    if reason:
        raise UsageError(f"{option} {str(path)!r} cannot be created ({reason}): give a folder you can write to")
    return out


def _cannot_create_in(folder: Path) -> str:
    """'' when a new entry can be made in `folder`, else why not."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    probe = folder / f".da3_ros_write_test_{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        return f"{folder}: {exc.strerror or exc}"
    probe.rmdir()
    return ""
