"""DA3WindowModel against the streaming contract (random:da3-small, tiny frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from da3_ros.model import infer
from da3_ros.runtime.da3_model import DA3WindowModel
from da3_ros.model.config import DA3Config, HeadConfig, ViTConfig
from da3_ros.model.net import DA3Net
from da3_ros.stream.interface import Frame, WindowModel, WindowPrediction

PROCESS_RES = 126  # 64x48 -> 126x98 network input: fast on CPU


def frames(n=3, h=48, w=64, seed=0, K=None):
    rng = np.random.default_rng(seed)
    return [Frame(index=i, stamp=0.1 * i, image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), intrinsics=K)
            for i in range(n)]


#: fields of view of the conditioned random camera head, radians (see `wm`)
FOV_RANGE = (0.3, 2.8)


@pytest.fixture(scope="module")
def wm():
    """Random DA3-small whose camera head answers fields of view near 1 rad, as a
    trained one does. Random weights alone put the fov's ReLU input near or below
    zero: fx is then clamped at (W/2)/1e-6 ~ 3e7 px or sits on a fov of ~1e-3 rad,
    where a change of a few ulps in the network (another BLAS blocking or thread
    count) moves fx by 1e-4 relative. Adding 1 rad to the fov bias makes
    fx = (W/2)/tan(fov/2) a well-conditioned function of the network's output."""
    with pytest.warns(UserWarning, match="RANDOM"):
        model = DA3WindowModel("random:da3-small", device="cpu", precision="fp32", process_res=PROCESS_RES)
    with torch.no_grad():
        model.net.cam_dec.fc_fov[0].bias += 1.0
    return model


def test_satisfies_protocol(wm):
    assert isinstance(wm, WindowModel)
    assert "da3-small" in wm.name and wm.metric is False


def test_predict_shapes_and_dtypes(wm):
    fs = frames()
    handles = [wm.encode(f) for f in fs]
    assert handles[0].processed_hw == (98, 126)
    p = wm.predict(fs, handles, decode=[0, 2])
    assert isinstance(p, WindowPrediction)
    assert p.c2w.shape == (3, 4, 4) and p.c2w.dtype == np.float64
    assert np.allclose(p.c2w[:, 3], [0, 0, 0, 1])
    assert np.allclose(p.c2w[:, :3, :3] @ p.c2w[:, :3, :3].transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert p.intrinsics.shape == (3, 3, 3) and p.intrinsics.dtype == np.float64
    # camera head: principal point at the image centre, in NATIVE pixels
    assert np.allclose(p.intrinsics[:, 0, 2], 32.0) and np.allclose(p.intrinsics[:, 1, 2], 24.0)
    assert sorted(p.depth) == [0, 2] and sorted(p.confidence) == [0, 2]
    for d in (0, 2):
        assert p.depth[d].shape == (48, 64) and p.depth[d].dtype == np.float32
        assert p.confidence[d].shape == (48, 64) and p.confidence[d].dtype == np.float32
        assert (p.depth[d] > 0).all() and (p.confidence[d] >= 1).all()
    assert p.metric is False and p.pose_confidence.shape == (3,)


def test_predict_equals_one_shot_inference(wm):
    """Cached streaming path == full forward of the official-contract network."""
    fs = frames(4, seed=1)
    p = wm.predict(fs, [wm.encode(f) for f in fs], decode=[1, 3])
    full = infer(wm.net, [f.image for f in fs], process_res=PROCESS_RES)
    for d in (1, 3):
        np.testing.assert_allclose(p.depth[d], full.native_depth(d), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(p.confidence[d], full.native_conf(d), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(p.c2w, full.c2w, atol=1e-4)
    # Tolerances from the arithmetic. Both paths run the same fp32 network on the same
    # input; they differ only in the order of the sums inside the matmuls (window batch
    # vs one frame, and the BLAS blocking, which depends on the thread count), a few ulps
    # per dot product. Depth is exp() of a head output and confidence 1 + exp(), so their
    # relative error is the output's absolute error, allowed 1e-4 above; the camera head
    # is a Linear of the same kind of features: its translation (c2w, atol 1e-4) and its
    # fields of view get the same absolute error d <= 1e-4 rad. fx = (W/2) / tan(fov/2)
    # then moves by |dfx / fx| = d / sin(fov) <= 1e-4 / sin(0.3) = 3.4e-4 for fov in
    # FOV_RANGE, which the conditioned fixture guarantees (asserted: it is the premise).
    K, K_full = p.intrinsics, full.native_intrinsics()
    fov = 2 * np.arctan(np.stack([K_full[:, 0, 2] / K_full[:, 0, 0], K_full[:, 1, 2] / K_full[:, 1, 1]]))
    assert ((fov > FOV_RANGE[0]) & (fov < FOV_RANGE[1])).all(), fov
    np.testing.assert_allclose(K[:, [0, 1], [0, 1]], K_full[:, [0, 1], [0, 1]], rtol=4e-4)
    # the principal point is the image centre, no network output: equal
    np.testing.assert_array_equal(K[:, :2, 2], K_full[:, :2, 2])
    np.testing.assert_array_equal(K[:, 2], K_full[:, 2])
    np.testing.assert_array_equal(K[:, [0, 1], [1, 0]], K_full[:, [0, 1], [1, 0]])


def test_conditioned_answer_is_in_callers_frame(wm):
    fs = frames(3, seed=2)
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[:, 0, 3] = [0.0, 2.0, 4.0]  # metres along x
    hs = [wm.encode(f) for f in fs]
    free = wm.predict(fs, hs, [1])
    cond = wm.predict(fs, hs, [1], intrinsics=np.stack([K] * 3), c2w=c2w)
    assert cond.metric is False and np.isfinite(cond.c2w).all()
    assert not np.allclose(free.depth[1], cond.depth[1])
    assert cond.c2w.shape == (3, 4, 4)


def test_ray_poses_and_mixed_native_sizes():
    with pytest.warns(UserWarning, match="RANDOM"):
        wm = DA3WindowModel("random:da3-small", process_res=PROCESS_RES, pose_source="ray", reference_strategy="first")
    fs = frames(2) + [Frame(index=2, stamp=0.3, image=np.zeros((96, 128, 3), np.uint8))]
    p = wm.predict(fs, [wm.encode(f) for f in fs], decode=[0, 2])
    assert p.depth[0].shape == (48, 64) and p.depth[2].shape == (96, 128)
    assert np.isfinite(p.c2w).all() and np.isfinite(p.intrinsics).all()
    assert sorted(p.depth) == [0, 2] and p.pose_confidence.shape == (3,)


def test_monocular_metric_model_uses_frame_intrinsics():
    cfg = DA3Config(name="da3metric-tiny-test", vit=ViTConfig(384, 12, 6, (4, 7, 9, 11), alt_start=-1, cat_token=False),
                    head=HeadConfig("dpt", 384, 64, (48, 96, 192, 384), output_dim=1))
    torch.manual_seed(0)
    net = DA3Net(cfg).eval()
    wm = DA3WindowModel(net, process_res=PROCESS_RES, precision="fp32")
    assert wm.metric is True
    K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
    fs = frames(2, K=K)
    hs = [wm.encode(f) for f in fs]
    p = wm.predict(fs, hs, [1])
    assert p.metric is True and p.extras["poses_valid"] is False
    np.testing.assert_allclose(p.c2w, np.tile(np.eye(4), (2, 1, 1)))
    np.testing.assert_allclose(p.intrinsics, np.stack([K, K]), rtol=1e-6)
    # metres = raw * f_processed / 300
    with torch.no_grad():
        raw = net.forward_window([h.tokens for h in hs], [1])["depth"][0]
    f_proc = 60.0 * 126 / 64 / 2 + 60.0 * 98 / 48 / 2
    from da3_ros.model.preprocess import map_to_native

    expect = map_to_native(raw * f_proc / 300, (48, 64))[0].numpy()
    np.testing.assert_allclose(p.depth[1], expect, rtol=1e-4)
