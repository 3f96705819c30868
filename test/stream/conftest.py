"""Fixtures for the streaming-core tests: synthetic sequences rendered once per
session (160x120, 200 frames: the geometry is resolution-independent, this
keeps the suite fast on two cores)."""

from __future__ import annotations

import pytest

from da3_ros.synthetic import make_sequence

SEQ_W, SEQ_H, SEQ_N = 160, 120, 200


@pytest.fixture(scope="session")
def sequence_cache():
    cache = {}

    def get(name: str, n_frames: int = SEQ_N, width: int = SEQ_W, height: int = SEQ_H, seed: int = 0):
        key = (name, n_frames, width, height, seed)
        if key not in cache:
            cache[key] = make_sequence(name, n_frames=n_frames, width=width, height=height, seed=seed)
        return cache[key]

    return get
