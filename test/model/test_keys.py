"""Parameter names and shapes equal the official networks' for every variant (built on
the meta device: nothing is materialised)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.utils._device  # noqa: F401  (factory-function list)

from da3_ros.model.config import VARIANTS, canonical_name
from da3_ros.model.loading import _IGNORED, expected_shapes


class _MetaFactories(torch.overrides.TorchFunctionMode):
    """Like `with torch.device("meta")`, except torch.linspace: the official ViT reads its
    (zero) drop-path schedule with .item() in __init__, which a meta tensor cannot do."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in torch.utils._device._device_constructors() and func is not torch.linspace:
            if kwargs.get("device") is None:
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


# da3-tiny is this project's own (the embedded default): no official counterpart
OFFICIAL_VARIANTS = sorted(set(VARIANTS) - {"da3-tiny"})


@pytest.mark.parametrize("variant", OFFICIAL_VARIANTS)
def test_state_dict_keys_and_shapes_match_official(variant):
    cfg_mod = pytest.importorskip("depth_anything_3.cfg", reason="official depth-anything-3 is the oracle")
    from depth_anything_3.registry import MODEL_REGISTRY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _MetaFactories():
            official = cfg_mod.create_object(cfg_mod.load_config(MODEL_REGISTRY[variant]))
    sd = official.state_dict()
    assert all(v.is_meta for v in sd.values())
    off = {k: tuple(v.shape) for k, v in sd.items()}
    mine = expected_shapes(variant)
    gs = {k for k in off if _IGNORED.match(k)}
    assert bool(gs) == ("giant" in variant)  # only (nested) giant carries the 3DGS head
    assert set(mine) == set(off) - gs
    assert {k: off[k] for k in mine} == mine


@pytest.mark.parametrize("name,expected", [
    ("depth-anything/DA3-SMALL", "da3-small"),
    ("DA3-LARGE-1.1", "da3-large"),
    ("depth-anything/DA3NESTED-GIANT-LARGE-1.1", "da3nested-giant-large"),
    ("da3metric-large", "da3metric-large"),
    ("depth-anything/DA3MONO-LARGE", "da3mono-large"),
    ("DA3-GIANT-1.1", "da3-giant"),
    ("da3-base", "da3-base"),
])
def test_names_and_hub_ids_resolve(name, expected):
    assert canonical_name(name) == expected


def test_unknown_variant_is_an_error():
    with pytest.raises(KeyError, match="unknown DA3 variant"):
        canonical_name("da3-huge")
