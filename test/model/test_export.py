"""`da3_ros export-onnx`: the per-view encoder and the cross-view + heads graph, run with
onnxruntime on the CPU at a tiny size, equal the PyTorch network."""

from __future__ import annotations

import json

import pytest

ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install onnxruntime)")
pytest.importorskip("onnx", reason="onnx not installed (torch.onnx.export needs it)")


def test_export_onnx_matches_pytorch(tmp_path):
    from da3_ros.model import load_model
    from da3_ros.model.export import check_onnx, export_onnx, main

    with pytest.warns(UserWarning, match="RANDOM"):
        net = load_model("random:da3-small")
    hw, window = (42, 56), 3
    paths = export_onnx(net, tmp_path / "onnx", window, hw)
    meta = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert meta["window"] == 3 and meta["image_hw"] == [42, 56] and meta["tokens"] == 1 + 3 * 4
    errs = check_onnx(net, paths, window, hw)
    assert set(errs) == {"tokens", "selector", "depth", "depth_conf", "extrinsics", "intrinsics"}
    assert max(errs.values()) < 1e-4, errs


def test_export_rejects_bad_sizes(tmp_path):
    from da3_ros.model.export import export_onnx

    with pytest.raises(ValueError, match="multiples"):
        export_onnx("random:da3-small", tmp_path, 2, (40, 56))
