"""Fixtures shared by every layer's tests, and the DDS sandbox of the suite.

DDS must stay on the loopback interface on the machines this runs on, with a
domain of its own so two test runs (or a test run and a developer's node) never
hear each other. The suite sets that itself, before anything imports rclpy,
whatever the calling shell says; every subprocess a test starts inherits it.
"""

from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Iron and newer
os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's equivalent
os.environ.pop("ROS_STATIC_PEERS", None)
# 1..100 from the process id: unique among concurrent runs on one machine in
# practice, and inside the range every RMW accepts without port clashes.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
# Tests need no network: the model hub is asked nothing (its cache still works).
os.environ["HF_HUB_OFFLINE"] = "1"
# Keep CPU tests within the two cores of CI and deterministic.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
#: synthetic sequences for the stream and runtime tests: 160x120, 200 frames (the
#: geometry is resolution-independent; this keeps the suite fast on two cores)
SEQ_W, SEQ_H, SEQ_N = 160, 120, 200


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sequence_cache():
    from da3_ros.synthetic import make_sequence

    cache = {}

    def get(name: str, n_frames: int = SEQ_N, width: int = SEQ_W, height: int = SEQ_H, seed: int = 0):
        key = (name, n_frames, width, height, seed)
        if key not in cache:
            cache[key] = make_sequence(name, n_frames=n_frames, width=width, height=height, seed=seed)
        return cache[key]

    return get


@pytest.fixture
def embedded_default(monkeypatch):
    """`model: default` resolves to the embedded da3-tiny, as on a machine without DA3
    weights in its Hugging Face cache (the suite already keeps the hub offline)."""
    from da3_ros import weights

    monkeypatch.setattr(weights, "hub_cached", lambda repo_id=weights.HUB_DEFAULT: False)
    monkeypatch.setattr(weights, "hub_reachable", lambda repo_id=weights.HUB_DEFAULT, timeout=3.0: False)
