"""Tensor-for-tensor parity with the official depth_anything_3 networks (same random
weights, written as a hub-layout checkpoint and loaded through our loader)."""

from __future__ import annotations


import pytest
import torch

from da3_ros.model.reference import select_reference
from model_test_utils import random_cameras, rel_err, run_official

RTOL = 1e-4


CASES = [
    ("da3-small", 1, "saddle_balanced", (56, 84)),
    ("da3-small", 2, "saddle_balanced", (56, 84)),
    ("da3-small", 4, "saddle_balanced", (56, 84)),
    ("da3-small", 4, "middle", (70, 98)),
    ("da3-small", 3, "saddle_sim_range", (56, 84)),
    ("da3-base", 1, "saddle_balanced", (70, 98)),
    ("da3-base", 2, "saddle_balanced", (56, 84)),
    ("da3-base", 4, "saddle_balanced", (70, 98)),
]


@pytest.mark.parametrize("variant,S,strategy,hw", CASES)
def test_forward_matches_official(official_factory, ported_factory, variant, S, strategy, hw):
    torch.manual_seed(S)
    images = torch.randn(1, S, 3, *hw)
    ref, head = run_official(official_factory(variant), images, ref_view_strategy=strategy)  # the official keyword
    with torch.no_grad():
        out = ported_factory(variant)(images, reference_strategy=strategy)
    for k in ("depth", "depth_conf", "ray", "ray_conf"):
        assert rel_err(head[k], out[k]) < RTOL, k
    assert out["ray"].shape[2:4] == (8 * hw[0] // 14, 8 * hw[1] // 14)
    for k in ("extrinsics", "intrinsics"):
        assert rel_err(ref[k], out[k]) < RTOL, k


def test_reordering_cases_really_reorder(ported_factory):
    """The S>=3 parity cases must exercise a reference view other than the first."""
    net = ported_factory("da3-small")
    torch.manual_seed(4)
    with torch.no_grad():
        cached = net.encode(torch.randn(4, 3, 56, 84))
    sel = torch.stack([c.selector for c in cached])[None]
    assert int(select_reference(sel, "middle")) == 2
    picks = {s: int(select_reference(sel, s)) for s in ("saddle_balanced", "saddle_sim_range")}
    assert all(0 <= v < 4 for v in picks.values())


@pytest.mark.parametrize("variant", ["da3-small", "da3-base"])
def test_pose_conditioned_forward_matches_official(official_factory, ported_factory, variant):
    S, H, W = 3, 56, 84
    torch.manual_seed(7)
    images = torch.randn(1, S, 3, H, W)
    w2c, K = random_cameras(S, H, W)
    ref, head = run_official(official_factory(variant), images, extrinsics=w2c, intrinsics=K)
    with torch.no_grad():
        out = ported_factory(variant)(images, extrinsics=w2c, intrinsics=K)
        free = ported_factory(variant)(images)
    for k in ("depth", "depth_conf", "ray", "ray_conf"):
        assert rel_err(head[k], out[k]) < RTOL, k
    for k in ("extrinsics", "intrinsics"):
        assert rel_err(ref[k], out[k]) < RTOL, k
    # the conditioning really changed the result
    assert rel_err(free["depth"], out["depth"]) > 1e-3


def test_camera_encoder_matches_official(official_factory, ported_factory):
    off, mine = official_factory("da3-small"), ported_factory("da3-small")
    w2c, K = random_cameras(5, 70, 98, seed=3)
    with torch.no_grad():
        a = off.cam_enc(w2c, K, (70, 98))
        b = mine.cam_enc(w2c, K, (70, 98))
    assert rel_err(a, b) < 1e-5


def _camera(seed: int, centred: bool):
    import numpy as np
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    R = torch.tensor(Rotation.from_rotvec(rng.normal(size=3) * 0.5).as_matrix(), dtype=torch.float32)
    t = torch.tensor(rng.normal(size=3), dtype=torch.float32)
    H, W = 112, 168
    cx, cy = (W / 2, H / 2) if centred else (W / 2 + 9.0, H / 2 - 6.0)
    K = torch.tensor([[150.0, 0, cx], [0, 140.0, cy], [0, 0, 1]])
    return torch.cat((R, t[:, None]), 1)[None], K[None], H, W


def test_ray_solvers_agree_on_known_camera(official_factory):
    """Both solvers recover a centred-principal-point camera from exact rays."""
    from depth_anything_3.utils.ray_utils import get_extrinsic_from_camray

    from da3_ros.model.ray_pose import denormalize_intrinsics, rays_from_camera, solve_rays

    c2w, K, H, W = _camera(1, centred=True)
    h, w = 64, 96
    ray = rays_from_camera(c2w, K, h, w, H, W)
    ray[..., :3] *= 3.0  # unnormalised directions, as predicted
    conf = 1 + torch.rand(1, h, w, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ext, focal, pp = get_extrinsic_from_camray(ray[None], conf[None].clone(), h, w)
    K_off = torch.tensor([[focal[0, 0, 0] / 2 * W, 0, pp[0, 0, 0] * W / 2],
                          [0, focal[0, 0, 1] / 2 * H, pp[0, 0, 1] * H / 2], [0, 0, 1]])
    mine_c2w, K_n, _ = solve_rays(ray, conf)
    K_mine = denormalize_intrinsics(K_n, H, W)[0]
    assert (ext[0, 0, :3] - c2w[0]).abs().max() < 1e-4
    assert (mine_c2w[0] - c2w[0]).abs().max() < 1e-5
    assert (mine_c2w[0] - ext[0, 0, :3]).abs().max() < 1e-4
    assert ((K_off - K[0]).abs().max() / 150.0) < 1e-4
    assert ((K_mine - K[0]).abs().max() / 150.0) < 1e-5


def test_bf16_autocast_matches_official_bf16(official_factory, hub_dir_factory):
    """Mixed precision as the official: bf16 autocast for the backbone, fp32 heads/cameras.

    On the CPU both run the same bf16 matmuls; remaining differences come from
    rounding order (e.g. RoPE tables built in fp32 here), hence the looser bounds.
    """
    from da3_ros.model import load_model

    net = load_model(hub_dir_factory("da3-small"), dtype=torch.bfloat16)
    torch.manual_seed(11)
    images = torch.randn(1, 4, 3, 56, 84)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, head = run_official(official_factory("da3-small"), images)
    with torch.no_grad():
        out = net(images)
    for k in ("depth", "depth_conf", "ray", "ray_conf", "extrinsics", "intrinsics"):
        assert out[k].dtype == torch.float32, k
    for k in ("depth", "depth_conf", "ray", "ray_conf"):
        assert rel_err(head[k].float(), out[k]) < 2e-3, k
    assert rel_err(ref["extrinsics"].float(), out["extrinsics"]) < 3e-2
    assert rel_err(ref["intrinsics"].float(), out["intrinsics"]) < 1e-3


def test_swiglu_backbone_matches_official_at_reduced_size():
    """ViT-g's SwiGLU FFN and alternating attention, on a reduced ViT (dims 192, 6 blocks)."""
    pytest.importorskip("depth_anything_3.cfg", reason="official depth-anything-3 is the oracle")
    import warnings

    from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer

    from da3_ros.model.config import ViTConfig
    from da3_ros.model.vit import VisionTransformer

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off = DinoVisionTransformer(img_size=518, patch_size=14, embed_dim=192, depth=6, num_heads=3,
                                    ffn_layer="swiglufused", init_values=1.0, alt_start=2, qknorm_start=2,
                                    rope_start=2, cat_token=True).eval()
    cfg = ViTConfig(192, 6, 3, (3, 5), alt_start=2, ffn="swiglu")
    mine = VisionTransformer(cfg).eval()
    mine.load_state_dict(off.state_dict(), strict=True)
    torch.manual_seed(1)
    x = torch.randn(1, 2, 3, 42, 56)
    with torch.no_grad():
        ref, _ = off.get_intermediate_layers(x, n=[3, 5])
        tokens, _ = mine.forward_early(mine.embed(x[0]))
        feats, cam = mine.forward_late(tokens[None], 3, 4)
    assert len(feats) == len(ref)
    for (ref_feat, _), feat in zip(ref, feats):
        assert rel_err(ref_feat, feat) < 1e-5
    assert rel_err(ref[-1][1], cam) < 1e-5  # camera tokens come from the last out layer
