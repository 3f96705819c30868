"""Monocular (metric/mono head + sky fill) and nested (metric alignment) behaviour vs the
official networks, on reduced-size configs (ViT-S backbones) so that CI stays fast."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from da3_ros.model.config import DA3Config, HeadConfig, NestedConfig, ViTConfig, get_config
from da3_ros.model.net import NestedDA3Net, metric_depth
from model_test_utils import rel_err

TOL = 1e-4


def _official_cfgs():
    cfg_mod = pytest.importorskip("depth_anything_3.cfg", reason="official depth-anything-3 is the oracle")
    from depth_anything_3.registry import MODEL_REGISTRY

    anyview = cfg_mod.load_config(MODEL_REGISTRY["da3-small"])
    metric = copy.deepcopy(cfg_mod.load_config(MODEL_REGISTRY["da3metric-large"]))
    metric.net.name = "vits"
    metric.net.out_layers = [4, 7, 9, 11]
    metric.head.dim_in = 384
    metric.head.features = 64
    metric.head.out_channels = [48, 96, 192, 384]
    return cfg_mod, anyview, metric


def _mine_metric() -> DA3Config:
    return DA3Config(name="da3metric-small-test",
                     vit=ViTConfig(384, 12, 6, (4, 7, 9, 11), alt_start=-1, cat_token=False),
                     head=HeadConfig("dpt", 384, 64, (48, 96, 192, 384), output_dim=1))


@pytest.fixture(scope="module")
def pair():
    cfg_mod, anyview, metric = _official_cfgs()
    from depth_anything_3.model.da3 import NestedDepthAnything3Net

    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off = NestedDepthAnything3Net(anyview, metric).eval()
    mine = NestedDA3Net(NestedConfig("nested-test", get_config("da3-small"), _mine_metric())).eval()
    mine.load_state_dict(off.state_dict(), strict=True)
    # random sky logits sit in a narrow band near -0.02: shift them across the 0.3
    # threshold so that both sky and non-sky pixels exist (the alignment needs both)
    with torch.no_grad():
        conv = mine.da3_metric.head.scratch.sky_output_conv2
        conv[2].bias.zero_()
        got = {}
        h = conv.register_forward_hook(lambda m, i, o: got.update(logit=o))
        torch.manual_seed(99)
        mine.da3_metric(torch.randn(1, 2, 3, 56, 84))
        h.remove()
        shift = 0.3 - float(got["logit"].median())
        for net in (off.da3_metric, mine.da3_metric):
            net.head.scratch.sky_output_conv2[2].bias.fill_(shift)
    return off, mine


def test_monocular_metric_head_matches_official(pair):
    off, mine = pair
    torch.manual_seed(2)
    images = torch.randn(1, 2, 3, 56, 84)
    with torch.no_grad():
        a = off.da3_metric(images)
        b = mine.da3_metric(images)
    assert set(b) == {"depth", "sky"}
    assert rel_err(a["sky"], b["sky"]) < TOL
    assert rel_err(a["depth"], b["depth"]) < TOL
    # some pixels are sky and were filled with the far non-sky depth
    sky = b["sky"] >= 0.3
    assert 10 < int(sky.sum()) < sky.numel() - 10
    assert torch.allclose(b["depth"][sky], b["depth"][sky][0].expand(int(sky.sum())))


def test_nested_alignment_matches_official(pair):
    off, mine = pair
    torch.manual_seed(3)
    images = torch.randn(1, 3, 3, 56, 84)
    with torch.no_grad():
        a = off(images)
        b = mine(images)
    assert abs(a["scale_factor"] - float(b["scale_factor"])) <= TOL * abs(a["scale_factor"])
    for k in ("depth", "depth_conf", "extrinsics", "intrinsics"):
        assert rel_err(a[k], b[k]) < TOL, k


def test_metric_scaling_formula():
    depth = torch.full((1, 2, 4, 6), 3.0)
    K = torch.tensor([[600.0, 0, 3], [0, 300.0, 2], [0, 0, 1]]).expand(1, 2, 3, 3)
    assert torch.allclose(metric_depth(depth, K), torch.full_like(depth, 3.0 * 450 / 300))
