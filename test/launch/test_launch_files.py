"""The launch files without ROS 2's launch: they compile, and README.md's
argument tables list exactly what they declare (name, default, meaning), so the
tables stay complete. Runs everywhere; the launch tests beside it run them."""

from __future__ import annotations

import ast
import py_compile
from typing import List, Tuple

import pytest

LAUNCH_FILES = ["live.launch.py", "replay.launch.py"]


def declared_arguments(path) -> List[Tuple[str, str, str]]:
    """The module-level ARGUMENTS list each launch file builds its DeclareLaunchArgument from."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} has no module-level ARGUMENTS list")


def readme_table(text: str, caption: str) -> List[str]:
    """The table rows right after the line that starts with `caption`."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(caption)), None)
    assert start is not None, f"README.md has no line starting with {caption!r}"
    rows = []
    for line in lines[start + 1:]:
        if not line.strip() and not rows:
            continue
        if not line.startswith("|"):
            break
        rows.append(line)
    assert rows[:2] == ["| argument | default | meaning |", "|---|---|---|"], rows[:2]
    return rows[2:]


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_compiles(repo_root, name, tmp_path):
    py_compile.compile(str(repo_root / "launch" / name), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_readme_lists_every_launch_argument(repo_root, name):
    arguments = declared_arguments(repo_root / "launch" / name)
    assert len({a[0] for a in arguments}) == len(arguments), f"{name} declares an argument twice"
    want = [f"| `{n}` | `{d}` | {text} |" for n, d, text in arguments]
    got = readme_table((repo_root / "README.md").read_text(), f"`{name}` arguments")
    assert got == want, "README.md's table of " + name + " should read:\n" + "\n".join(want)


def test_replay_passes_the_node_arguments_on(repo_root):
    """replay.launch.py includes live.launch.py: every live argument but use_sim_time (set from
    clock) is one of replay's and is passed on."""
    live = {n: text for n, _, text in declared_arguments(repo_root / "launch" / "live.launch.py")}
    replay = {n: text for n, _, text in declared_arguments(repo_root / "launch" / "replay.launch.py")}
    assert set(live) - {"use_sim_time"} <= set(replay), set(live) - set(replay)
    source = (repo_root / "launch" / "replay.launch.py").read_text()
    for name in set(live) - {"use_sim_time"}:
        assert f'"{name}": get("{name}")' in source, f"replay.launch.py does not pass {name} to live.launch.py"
