"""Shared fixtures of the model tests: the OFFICIAL depth_anything_3 networks built
with random weights (the oracle), written as hub-layout directories and loaded
back through our loader."""

from __future__ import annotations

import pathlib

import pytest
import torch

from model_test_utils import build_official

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def official_factory():
    """Cached official networks by variant (small ones only: this materialises weights)."""
    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = build_official(variant)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def hub_dir_factory(tmp_path_factory, official_factory):
    """variant -> hub-layout directory holding the official random weights."""
    from da3_ros.model.loading import save_hub_layout

    cache = {}

    def get(variant: str) -> pathlib.Path:
        if variant not in cache:
            d = tmp_path_factory.mktemp(variant)
            cache[variant] = save_hub_layout(official_factory(variant).state_dict(), d, variant)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def ported_factory(hub_dir_factory):
    """variant -> our network loaded from the official weights (fp32, CPU)."""
    from da3_ros.model import load_model

    cache = {}

    def get(variant: str):
        if variant not in cache:
            cache[variant] = load_model(hub_dir_factory(variant))
        return cache[variant]

    return get
