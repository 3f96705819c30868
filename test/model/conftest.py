"""Shared fixtures of the model tests: the OFFICIAL depth_anything_3 networks built
with random weights (the oracle), written as hub-layout directories and loaded
back through our loader."""

from __future__ import annotations

import pathlib
import warnings

import pytest
import torch

torch.set_num_threads(2)


def _official():
    return pytest.importorskip(
        "depth_anything_3.cfg",
        reason="the official depth-anything-3 package (pip install --no-deps depth-anything-3==0.1.1) "
        "is the parity oracle",
    )


def official_config(variant: str):
    cfg_mod = _official()
    from depth_anything_3.registry import MODEL_REGISTRY

    return cfg_mod.load_config(MODEL_REGISTRY[variant])


def build_official(variant: str, seed: int = 0):
    """Random-weight official network (DepthAnything3Net / NestedDepthAnything3Net), eval mode."""
    cfg_mod = _official()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cfg_mod.create_object(official_config(variant)).eval()


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
