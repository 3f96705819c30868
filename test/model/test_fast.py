"""The optimised incremental path (`da3_ros.model.fast`) equals the plain path.

CUDA graphs and torch.compile are GPU-only; what runs on the CPU is tested here:
the fixed-shape stages (reused upload buffer, the model's own preprocessing, blocks,
reference order, head inputs of the needed views only, depth and pose stages).
The GPU equality check lives in `da3_ros bench`, which compares (c) with (b)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from da3_ros.model import load_model
from da3_ros.runtime.da3_model import DA3WindowModel
from da3_ros.model.fast import resolve_compile
from da3_ros.stream.interface import Frame

PROCESS_RES = 126


def frames(n, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return [Frame(i, 0.1 * i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def net():
    with pytest.warns(UserWarning, match="RANDOM"):
        return load_model("random:da3-small")


def test_resolve_compile():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_compile("auto", cpu) == "off" and resolve_compile(False, cpu) == "off"
    assert resolve_compile(True, cpu) == "staged" and resolve_compile("graphs", cpu) == "staged"
    assert resolve_compile("staged", cpu) == "staged"
    assert resolve_compile("auto", cuda) in ("inductor", "graphs")
    with pytest.raises(ValueError):
        resolve_compile("fast", cpu)


def test_one_block_implementation():
    """The fast path has no block, attention or preprocessing of its own: it runs the model's."""
    import inspect

    import da3_ros.model.fast as fast

    src = inspect.getsource(fast)
    for name in ("scaled_dot_product_attention", "layer_norm", "F.linear", "apply_rope", "interpolate"):
        assert name not in src, name


def test_model_changes_reach_the_fast_path(net):
    """A change made in the model (here: a forward hook on one cross-view block and a pinned
    attention kernel) changes the staged path exactly as the plain path."""
    plain = DA3WindowModel(net, precision="fp32", process_res=PROCESS_RES, compile=False)
    fast = DA3WindowModel(net, precision="fp32", process_res=PROCESS_RES, compile="staged")
    fs = frames(3, seed=5)
    before = plain.predict(fs, [plain.encode(f) for f in fs], [2])
    blk = net.vit.blocks[net.vit.alt_start + 1]
    hook = blk.register_forward_hook(lambda m, args, out: out * 1.5)
    blk.attn.kernel = "math"
    try:
        a = plain.predict(fs, [plain.encode(f) for f in fs], [2])
        b = fast.predict(fs, [fast.encode(f) for f in fs], [2])
    finally:
        hook.remove()
        blk.attn.kernel = None
    assert np.abs(a.depth[2] - before.depth[2]).max() > 1e-3 * np.abs(before.depth[2]).max()
    np.testing.assert_allclose(b.depth[2], a.depth[2], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(b.c2w, a.c2w, atol=1e-4)


@pytest.mark.parametrize("pose_source", ["camera", "ray"])
def test_staged_path_equals_plain(net, pose_source):
    plain = DA3WindowModel(net, precision="fp32", process_res=PROCESS_RES, pose_source=pose_source, compile=False)
    fast = DA3WindowModel(net, precision="fp32", process_res=PROCESS_RES, pose_source=pose_source, compile=True)
    assert plain._fast is None and fast.compile_mode == "staged"
    assert fast.warmup(64, 48, 3) >= 0.0 and plain.warmup(64, 48, 3) == 0.0
    fs = frames(4, seed=3)
    for S, decode in ((1, [0]), (2, [1]), (4, [3]), (4, [0, 2])):
        hp = [plain.encode(f) for f in fs[:S]]
        hf = [fast.encode(f) for f in fs[:S]]
        torch.testing.assert_close(hf[-1].tokens.tokens, hp[-1].tokens.tokens, rtol=1e-5, atol=1e-5)
        a = plain.predict(fs[:S], hp, decode)
        b = fast.predict(fs[:S], hf, decode)
        for d in decode:
            np.testing.assert_allclose(b.depth[d], a.depth[d], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(b.confidence[d], a.confidence[d], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b.c2w, a.c2w, atol=1e-4)
        np.testing.assert_allclose(b.intrinsics, a.intrinsics, rtol=1e-4)
        assert b.metric == a.metric
    # nothing decoded (pipeline probe) goes through the plain path
    p = fast.predict(fs[:2], [fast.encode(f) for f in fs[:2]], [])
    assert p.depth == {} and p.c2w.shape == (2, 4, 4)


def test_bf16_linear_weights_are_exact_under_autocast():
    """Storing the blocks' Linear weights in the autocast dtype does not change the plain path."""
    with pytest.warns(UserWarning, match="RANDOM"):
        net = load_model("random:da3-small")
    plain = DA3WindowModel(net, precision="bf16", process_res=PROCESS_RES, compile=False)
    fs = frames(3, seed=4)
    before = plain.predict(fs, [plain.encode(f) for f in fs], [2])
    fast = DA3WindowModel(net, precision="bf16", process_res=PROCESS_RES, compile="staged")
    assert net.vit.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    after = plain.predict(fs, [plain.encode(f) for f in fs], [2])
    np.testing.assert_array_equal(after.depth[2], before.depth[2])
    b = fast.predict(fs, [fast.encode(f) for f in fs], [2])
    err = np.abs(b.depth[2] - before.depth[2]).max() / np.abs(before.depth[2]).max()
    assert err < 5e-2  # bf16 tolerance of `da3_ros bench`
