"""Imports point one way: model (torch) and geometry (numpy) at the bottom, the
numpy-only stream above geometry, runtime (the network bound to the stream, the
offline runner) above both, ros (the only rclpy user) on top. Checked on the source text, so a lazy import
inside a function counts too."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "da3_ros"
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "nav_msgs", "tf2_msgs", "diagnostic_msgs",
               "std_srvs", "rosgraph_msgs", "builtin_interfaces", "da3_ros.msg")
#: the command-line layer sits beside ros, above every other layer
ENTRY_POINTS = ("da3_ros.cli", "da3_ros.bench")
#: above the numpy-only core: what binds a network (torch) to it, and what feeds it
ABOVE_STREAM = ("da3_ros.runtime", "da3_ros.ros", "da3_ros.io", "da3_ros.synthetic", "da3_ros.train", "da3_ros.model",
                "torch")
# layer -> what it must never import
FORBIDDEN = {
    "model": ("da3_ros.stream", "da3_ros.runtime", "da3_ros.ros", "da3_ros.io", "da3_ros.synthetic", "da3_ros.train")
    + ENTRY_POINTS + ROS_MODULES,
    "geometry": ("da3_ros.stream", "da3_ros.runtime", "da3_ros.ros", "da3_ros.model", "torch") + ENTRY_POINTS + ROS_MODULES,
    "io": ("da3_ros.stream", "da3_ros.runtime", "da3_ros.ros", "da3_ros.model", "torch") + ENTRY_POINTS + ROS_MODULES,
    "stream": ABOVE_STREAM + ENTRY_POINTS + ROS_MODULES,
    "runtime": ("da3_ros.ros", "da3_ros.train") + ENTRY_POINTS + ROS_MODULES,
    "synthetic": ("da3_ros.ros",) + ENTRY_POINTS + ROS_MODULES,
    "train": ("da3_ros.ros",) + ENTRY_POINTS + ROS_MODULES,
    # the front ends (node, process-bag, replay, demo) use the runtime, never the trainer
    "ros": ("da3_ros.train",) + ENTRY_POINTS,
    # the benchmark runs the model and the streaming session, no ROS
    "bench": ("da3_ros.ros", "da3_ros.train", "da3_ros.cli") + ROS_MODULES,
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


def test_stream_modules_leave_torch_unimported():
    """Importing every da3_ros.stream module in a fresh interpreter loads no torch."""
    import subprocess
    import sys

    modules = sorted(p.stem for p in (PACKAGE / "stream").glob("*.py") if p.stem != "__init__")
    code = ("import sys\n" + "".join(f"import da3_ros.stream.{m}\n" for m in modules)
            + "bad = [m for m in ('torch', 'rclpy') if m in sys.modules]\n"
            + "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert out.stdout.strip() == "", f"importing da3_ros.stream pulled in {out.stdout.strip()}"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph():
    """da3_ros module -> the da3_ros modules it imports (lazy imports too; a
    package import counts as its __init__, `from pkg import mod` as mod)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        is_pkg = path.name == "__init__.py"
        package = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def test_no_import_circles():
    """Modules import one way inside a layer too: no module reaches itself
    through its imports. Packages' __init__ files (which re-export their
    modules) are left out of the graph."""
    graph = {m: {t for t in ts if not _is_package(t)} for m, ts in import_graph().items() if not _is_package(m)}
    circles = set()
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    circles.add(" -> ".join(trail + (start,)))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + (nxt,)))
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))


def _is_package(module: str) -> bool:
    return (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()


def test_tests_import_no_conftest_by_name():
    """Several test folders have a conftest.py, all under the module name `conftest`:
    `from conftest import x` gets whichever was imported first, so a file collected
    beside another folder's tests fails. Shared helpers live in helper modules."""
    tests = PACKAGE.parent / "test"
    bad = [f"{p.relative_to(tests)}:{n.lineno}" for p in sorted(tests.rglob("*.py"))
           for n in ast.walk(ast.parse(p.read_text()))
           if (isinstance(n, ast.ImportFrom) and n.module == "conftest")
           or (isinstance(n, ast.Import) and any(a.name == "conftest" for a in n.names))]
    assert not bad, "imports conftest by name: " + ", ".join(bad)
