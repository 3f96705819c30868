"""Loader: hub layout, bare files, aliases, strict key/shape errors, hub-id errors."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from da3_ros.model import DA3LoadError, load_model, save_hub_layout
from da3_ros.model.loading import WEIGHTS_NAME
from model_test_utils import build_official, rel_err

ALIASES = [f"head.scratch.output_conv2_aux.{i}.2.weight" for i in range(4)]


@pytest.fixture(scope="module")
def small_sd():
    """The official network's state dict when the package is there, else our own random one
    (same names, same shared LayerNorm): the loader tests do not need the oracle."""
    try:
        return build_official("da3-small").state_dict()
    except pytest.skip.Exception:
        with pytest.warns(UserWarning, match="RANDOM"):
            return load_model("random:da3-small").state_dict()


def _write(tmp_path, sd, name="da3-small"):
    return save_hub_layout(sd, tmp_path / "ckpt", name)


def _same_weights(model, sd):
    mine = model.state_dict()
    return all(torch.equal(mine[k], sd[k]) for k in mine)


def test_hub_directory_with_all_four_aliases(tmp_path, small_sd):
    d = _write(tmp_path, small_sd)
    keys = load_file(str(d / WEIGHTS_NAME)).keys()
    assert all("model." + a in keys for a in ALIASES)
    model = load_model(d)
    assert model.variant == "da3-small" and model.ignored_keys == []
    assert _same_weights(model, small_sd)


def test_one_alias_file_loads_and_is_shared(tmp_path, small_sd):
    d = save_hub_layout(small_sd, tmp_path / "one", "da3-small", one_alias=True)
    keys = load_file(str(d / WEIGHTS_NAME)).keys()
    assert sum("model." + a in keys for a in ALIASES) == 1
    model = load_model(d)
    assert _same_weights(model, small_sd)
    seqs = model.head.scratch.output_conv2_aux
    assert all(s[2] is seqs[3][2] for s in seqs)  # one LayerNorm module, four names


def test_bare_safetensors_with_variant_and_without_prefix(tmp_path, small_sd):
    f = tmp_path / "w.safetensors"
    save_file({k: v.clone().contiguous() for k, v in small_sd.items()}, str(f))
    assert _same_weights(load_model(f, variant="DA3-SMALL-1.1"), small_sd)
    with pytest.raises(DA3LoadError, match="variant"):
        load_model(f)


def test_missing_key_is_named(tmp_path, small_sd):
    sd = dict(small_sd)
    del sd["backbone.pretrained.blocks.3.attn.qkv.bias"]
    with pytest.raises(DA3LoadError, match=r"missing keys \(1\): backbone\.pretrained\.blocks\.3\.attn\.qkv\.bias"):
        load_model(_write(tmp_path, sd))


def test_unexpected_key_is_named(tmp_path, small_sd):
    sd = dict(small_sd)
    sd["head.extra_conv.weight"] = torch.zeros(3)
    with pytest.raises(DA3LoadError, match=r"unexpected keys \(1\): head\.extra_conv\.weight"):
        load_model(_write(tmp_path, sd))


def test_wrong_shape_is_named(tmp_path, small_sd):
    sd = dict(small_sd)
    sd["cam_dec.fc_t.weight"] = torch.zeros(4, 768)
    with pytest.raises(DA3LoadError, match=r"cam_dec\.fc_t\.weight: file \(4, 768\) vs model \(3, 768\)"):
        load_model(_write(tmp_path, sd))


def test_wrong_variant_is_an_error(tmp_path, small_sd):
    with pytest.raises(DA3LoadError, match="does not match da3-base"):
        load_model(_write(tmp_path, small_sd, "da3-base"))


def test_gaussian_head_keys_are_reported_as_ignored(tmp_path, small_sd, caplog):
    sd = dict(small_sd)
    sd["gs_head.projects.0.weight"] = torch.zeros(2, 2)
    sd["gs_adapter.some_buffer"] = torch.zeros(1)
    with caplog.at_level(logging.WARNING, logger="da3_ros.model"), pytest.warns(UserWarning, match="ignored 2 keys"):
        model = load_model(_write(tmp_path, sd))
    assert model.ignored_keys == ["gs_adapter.some_buffer", "gs_head.projects.0.weight"]
    assert "3D-Gaussian" in caplog.text
    assert not any("gs_" in k for k in model.state_dict())


def test_pickle_checkpoints_are_refused(tmp_path, small_sd):
    f = tmp_path / "model.pth"
    torch.save({"a": torch.zeros(1)}, f)
    with pytest.raises(DA3LoadError, match="only .safetensors"):
        load_model(f, variant="da3-small")


def test_offline_hub_id_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(DA3LoadError) as e:
        load_model("depth-anything/DA3-SMALL")
    msg = str(e.value)
    assert "depth-anything/DA3-SMALL" in msg
    assert str(tmp_path / "hub-cache") in msg
    assert "local folder with config.json + model.safetensors" in msg and "HF_HUB_OFFLINE" in msg


def test_random_weights_warn_and_are_seeded():
    with pytest.warns(UserWarning, match="RANDOM weights"):
        a = load_model("random:da3-small")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        b = load_model("random:DA3-SMALL")
    assert _same_weights(a, b.state_dict())
    assert not torch.equal(a.backbone.pretrained.camera_token[0, 0], a.backbone.pretrained.camera_token[0, 1])


def test_bf16_request_keeps_fp32_weights_and_autocasts(tmp_path, small_sd):
    model = load_model(_write(tmp_path, small_sd), dtype=torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.amp_dtype == torch.bfloat16
    torch.manual_seed(0)
    x = torch.randn(1, 2, 3, 56, 84)
    with torch.no_grad():
        lo = model(x)
        model.set_precision("fp32")
        hi = model(x)
    assert lo["depth"].dtype == torch.float32 and lo["extrinsics"].dtype == torch.float32
    err = rel_err(hi["depth"], lo["depth"])
    assert 0 < err < 0.2  # bf16 backbone: close, not identical
