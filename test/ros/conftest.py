"""Real rclpy over real DDS: helpers for the ROS-layer tests (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Callable, Iterator, List

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is not importable: run `make setup` and `. ./env.sh`")
from rclpy.context import Context  # noqa: E402
from rclpy.node import Node  # noqa: E402

from node_harness import Camera, Recorder, Spinner, start_node  # noqa: E402


@pytest.fixture
def ros_context() -> Iterator[Context]:
    """A fresh rclpy context per test, shut down afterwards."""
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def make_node(ros_context: Context) -> Iterator[Callable[[str], Node]]:
    nodes: List[Node] = []

    def factory(name: str, **kwargs) -> Node:
        node = Node(name, context=ros_context, **kwargs)
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.destroy_node()


class ChildProcess:
    """A Python subprocess whose output is kept for assertion messages."""

    def __init__(self, args: List[str], env=None):
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        self.lines: List[str] = []

    def wait_for_line(self, text: str, timeout: float) -> bool:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if selector.select(timeout=0.1):
                line = self.proc.stdout.readline()
                if not line:
                    break  # the child exited
                self.lines.append(line.rstrip("\n"))
        return any(text in line for line in self.lines)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # let rclpy shut down cleanly
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # stuck: da3_ros's entry points dump every thread's stack on SIGUSR1,
                # so the failure says where it hung
                self.proc.send_signal(signal.SIGUSR1)
                time.sleep(1.0)
                self.proc.kill()
                self.proc.wait()
        rest = self.proc.stdout.read() if self.proc.stdout else ""
        self.lines.extend(rest.splitlines())
        return self.output()


@pytest.fixture
def child_process() -> Iterator[Callable[..., ChildProcess]]:
    children: List[ChildProcess] = []

    def start(args: List[str], env=None) -> ChildProcess:
        child = ChildProcess(args, env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()


@pytest.fixture
def rig(ros_context, make_node):
    """da3_node in-process (test defaults: node_harness.start_node) with a camera and a recorder on real DDS:
    (start(model, **params) -> (node, camera, recorder, spinner)); all torn down after the test."""
    started = []

    def start(model, compressed=False, **params):
        node = start_node(ros_context, model, use_compressed=compressed, **params)
        io_node = make_node("test_camera_and_recorder")
        camera, recorder = Camera(io_node, compressed=compressed), Recorder(io_node)
        spinner = Spinner(ros_context, node, io_node)
        started.append((node, spinner))
        # let discovery finish before the first frame (best effort drops early samples)
        assert spinner.wait_for(lambda: node.count_subscribers("depth/image") > 0
                                and io_node.count_subscribers("image" if not compressed else "image/compressed") > 0,
                                10.0), "node and test did not discover each other"
        return node, camera, recorder, spinner

    yield start
    for node, spinner in started:
        spinner.shutdown()
        node.destroy_node()
