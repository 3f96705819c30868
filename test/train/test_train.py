"""The training code of the embedded model on the CPU at tiny sizes: data, one
step, resume (sharded state), fp16 export loaded by `load_model`, `model: default`."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from da3_ros.train import data
from da3_ros.train.losses import losses, targets
from da3_ros.train.trainer import (cross_view_blocks, export, forward_train, load_state, matching, new_model,
                                   sample_batch, save_state, to_network)


def test_held_out_seeds_are_never_training_seeds():
    for _, seed in data.HELD_OUT:
        with pytest.raises(ValueError):
            data.clip_spec(seed, 2)
    with pytest.raises(ValueError):
        data.clip_spec(5, 2)  # small seeds belong to the tests
    assert min(s for _, s in data.HELD_OUT) < data.TRAIN_SEED_BASE


def _render_clip(spec):
    from da3_ros.synthetic.render import render

    frames = [render(spec.scene, T, spec.K, data.NATIVE_W, data.NATIVE_H) for T in spec.c2w]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


def test_clip_is_deterministic_and_valid():
    a, b = data.clip_spec(data.TRAIN_SEED_BASE + 3, 3), data.clip_spec(data.TRAIN_SEED_BASE + 3, 3)
    assert np.array_equal(a.c2w, b.c2w) and np.array_equal(a.K, b.K)
    (a_images, a_depth), (b_images, b_depth) = _render_clip(a), _render_clip(b)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_depth, b_depth)
    assert a_images.shape == (3, data.NATIVE_H, data.NATIVE_W, 3)
    assert np.isfinite(a_depth).all() and (a_depth > 0).all()


def _specs(n=2, frames=8):
    return [data.clip_spec(data.TRAIN_SEED_BASE + 10 + s, frames) for s in range(n)]


def test_batch_renders_each_window_from_its_own_spec():
    """The training batch (rendered by `render_batch`) holds exactly the frames the CPU
    renderer makes for the sampled views of each clip."""
    from da3_ros.synthetic.render import render

    specs = _specs(3, 8)
    ims, ds, cs, Ks = sample_batch(specs, 3, random.Random(2), chunk=4)
    assert ims.shape == (3, 3, data.NATIVE_H, data.NATIVE_W, 3) and ims.dtype == torch.uint8
    for b, spec in enumerate(specs):
        for v in range(3):
            i = int(np.argmin(np.abs(spec.c2w - cs[b, v].double().numpy()).sum(axis=(1, 2))))
            im, d = render(spec.scene, spec.c2w[i], spec.K, data.NATIVE_W, data.NATIVE_H)
            assert np.array_equal(ims[b, v].numpy(), im)
            np.testing.assert_allclose(ds[b, v].numpy(), d, rtol=1e-6)


def _step(net, opt, batch, hw=(56, 70)):
    ims, ds, cs, Ks = batch
    x, d, K = to_network(ims, ds, Ks, hw=hw, augment=True)
    pred = forward_train(net, x, None)
    tgt = targets(d, cs, K, hw, pred["ray"].shape[2:4])
    ls = losses(pred, tgt)
    opt.zero_grad()
    ls["total"].backward()
    opt.step()
    return ls


def test_targets_are_consistent():
    """Ground-truth rays equal depth back-projection: origin + depth * direction
    lands on the same world point from every view (scale-normalised)."""
    ims, ds, cs, Ks = sample_batch(_specs(1), 3, random.Random(0))
    x, d, K = to_network(ims, ds, Ks, hw=(56, 70))
    h, w = 32, 40  # ray grid of a 56x70 input
    tgt = targets(d, cs, K, (56, 70), (h, w))
    assert torch.allclose(tgt["t"][:, 0], torch.zeros(3), atol=1e-5)
    assert torch.allclose(tgt["q"][:, 0], torch.tensor([0.0, 0, 0, 1]), atol=1e-5)
    ray = tgt["rays"][0, 0]  # reference view: origin 0, direction K^-1 [u v 1] (z = 1)
    assert torch.allclose(ray[..., 3:], torch.zeros(3), atol=1e-5)
    assert torch.allclose(ray[..., 2], torch.ones(h, w), atol=1e-5)


def test_step_resume_export_and_load(tmp_path):
    torch.manual_seed(0)
    net = new_model().train()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    batch = sample_batch(_specs(), 2, random.Random(1))
    l0 = _step(net, opt, batch)
    assert all(torch.isfinite(v) for v in l0.values())
    paths = save_state(tmp_path / "run", net, opt, {"step": 1, "train_seconds": 1.0, "next_seed": 7})
    assert all(p.stat().st_size < 16 * 2**20 for p in paths)
    net2 = new_model(seed=1).train()
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-4)
    meta = load_state(tmp_path / "run", net2, opt2)
    assert meta["step"] == 1 and meta["next_seed"] == 7
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(a, b), k
    # the resumed optimiser takes the same next step
    torch.manual_seed(5)
    _step(net, opt, batch)
    torch.manual_seed(5)
    _step(net2, opt2, batch)
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    # fp16 export in the hub layout, loaded as fp32 by the regular loader
    from da3_ros.model import load_model

    d = export(net, tmp_path / "da3-tiny")
    assert (d / "config.json").is_file()
    m = load_model(str(d))
    assert m.variant == "da3-tiny"
    p = dict(m.named_parameters())["backbone.pretrained.blocks.0.attn.qkv.weight"]
    assert p.dtype == torch.float32
    ref = dict(net.named_parameters())["backbone.pretrained.blocks.0.attn.qkv.weight"]
    assert torch.allclose(p, ref.detach().half().float())


def test_shipped_checkpoint_is_small_fp16_and_loads():
    from safetensors import safe_open

    from da3_ros.model import load_model
    from da3_ros.weights import EMBEDDED_DIR

    f = EMBEDDED_DIR / "model.safetensors"
    assert f.stat().st_size < 15 * 10**6
    with safe_open(str(f), "pt") as h:
        keys = list(h.keys())
        assert all(k.startswith("model.") for k in keys)
        assert h.get_tensor(keys[0]).dtype == torch.float16
    m = load_model(str(EMBEDDED_DIR))
    assert m.variant == "da3-tiny" and next(m.parameters()).dtype == torch.float32


def test_resolve_default_model(monkeypatch):
    from da3_ros import weights

    monkeypatch.setattr(weights, "hub_cached", lambda repo_id=weights.HUB_DEFAULT: False)
    monkeypatch.setattr(weights, "hub_reachable", lambda repo_id=weights.HUB_DEFAULT, timeout=3.0: False)
    src, desc = weights.resolve_default_model()
    assert Path(src) == weights.EMBEDDED_DIR and "embedded" in desc
    assert weights.default_process_res(src) == weights.EMBEDDED_PROCESS_RES
    monkeypatch.setenv("DA3_DEFAULT_MODEL", "hub")  # no hidden switch: the environment changes nothing
    assert Path(weights.resolve_default_model()[0]) == weights.EMBEDDED_DIR
    monkeypatch.setattr(weights, "hub_cached", lambda repo_id=weights.HUB_DEFAULT: True)
    src, desc = weights.resolve_default_model()
    assert src == weights.HUB_DEFAULT and weights.default_process_res(src) is None


def test_patch_correspondence_matches_the_rotation_homography():
    """Zero baseline: the match of a patch centre is K R K^-1 of it, whatever the depth;
    and the correspondence loss reaches the taught head's logits."""
    from da3_ros.synthetic import make_sequence
    from da3_ros.train.losses import patch_correspondence

    seq = make_sequence("rotation", n_frames=40, width=126, height=98, seed=3)
    idx = [0, 2]
    depth = torch.from_numpy(seq.depth[idx])[None]
    c2w = torch.from_numpy(seq.c2w[idx])[None]
    K = torch.from_numpy(seq.intrinsics).float().clone()
    K[:2, 2] += 0.5  # continuous pixel convention
    K = K.expand(1, 2, 3, 3)
    ph, pw = 7, 9
    m = patch_correspondence(depth, c2w, K, (ph, pw))[0, 1]
    assert (m >= 0).float().mean() > 0.5
    R = (np.linalg.inv(seq.c2w[0]) @ seq.c2w[2])[:3, :3]
    Kn = K[0, 0].double().numpy()
    H = Kn @ R @ np.linalg.inv(Kn)
    for p in np.flatnonzero(m.numpy() >= 0):
        r, c = divmod(p, pw)
        x = H @ [(c + 0.5) * 14, (r + 0.5) * 14, 1.0]
        u, v = x[0] / x[2], x[1] / x[2]
        assert m[p] == int(v // 14) * pw + int(u // 14), (p, u, v)
    # the taught head's logits have the loss's shape and carry its gradient
    net = new_model().train()
    x = torch.randn(1, 2, 3, ph * 14, pw * 14)
    pred = forward_train(net, x, None, match=2)  # head 0 of cross-view blocks 5 and 7
    assert [lg.shape for lg in pred["match_logits"]] == [(1, 2, ph * pw, ph * pw)] * 2
    ce, acc = matching(pred["match_logits"], m[None, None].expand(1, 2, -1).clone().index_fill_(1, torch.tensor([0]), -1))
    ce.backward()
    assert torch.isfinite(ce) and 0 <= float(acc) <= 1
    assert net.vit.blocks[5].attn.qkv.weight.grad.abs().sum() > 0
    assert net.vit.blocks[7].attn.qkv.weight.grad.abs().sum() > 0
    assert net.vit.blocks[9].attn.qkv.weight.grad is None  # not taught, and after the last taught one
    with pytest.raises(ValueError, match="4 cross-view blocks"):
        cross_view_blocks(net, 5)


def test_ship_puts_a_run_in_the_package_with_its_record(tmp_path):
    """`train.ship`: the export replaces the embedded weights, the run's log follows a
    stage record at the end of the shipped log, eval.json is the run's with a note."""
    import json
    import shutil

    from da3_ros.train.ship import ship
    from da3_ros.weights import EMBEDDED_DIR

    dest = tmp_path / "da3-tiny"
    shutil.copytree(EMBEDDED_DIR, dest)
    before = (dest / "train_log.jsonl").read_text().splitlines()
    run = tmp_path / "run"
    export(new_model(seed=3), run)  # config.json + model.safetensors, as the trainer exports
    (run / "train_log.jsonl").write_text('{"event": "start"}\n{"event": "end", "step": 7}\n')
    (run / "eval.json").write_text(json.dumps({"camera": {"mean": {"abs_rel": 0.5}}}))
    ship(run, "R", "--rig 0.5", "a note", dest=dest)
    after = (dest / "train_log.jsonl").read_text().splitlines()
    assert after[:len(before)] == before
    assert [json.loads(x) for x in after[len(before):]] == [{"event": "stage", "name": "R", "args": "--rig 0.5"},
                                                            {"event": "start"}, {"event": "end", "step": 7}]
    assert (dest / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert json.loads((dest / "eval.json").read_text()) == {"camera": {"mean": {"abs_rel": 0.5}}, "_note": "a note"}
