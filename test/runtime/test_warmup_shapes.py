"""Warm-up covers every window shape a stream meets: no new fixed-shape stages
(CUDA-graph captures on a GPU) while streaming.

CUDA graphs are GPU-only; the shape bookkeeping is the same on the CPU ("staged"
mode runs the same stages without graphs), so it is asserted here over streams
that fill the window, share and re-decode keyframes, use a stride, and carry
rig frames."""

from __future__ import annotations

import numpy as np
import pytest

from da3_ros.model import load_model
from da3_ros.runtime.da3_model import DA3WindowModel
from da3_ros.stream import Frame, StreamConfig, Streamer

W, H = 64, 48


@pytest.fixture(scope="module")
def net():
    with pytest.warns(UserWarning, match="RANDOM"):
        return load_model("random:da3-small")


def stream(model, cfg, n, cameras=("",)):
    rng = np.random.default_rng(0)
    st = Streamer(model, cfg)
    answered = 0
    for i in range(n):
        frames = [Frame(i * len(cameras) + k, 0.5 * i, rng.integers(0, 256, (H, W, 3), dtype=np.uint8), camera=c)
                  for k, c in enumerate(cameras)]
        answered += len(st.push_rig(frames))
    return answered


CASES = {
    "window 4, stride 1": (StreamConfig(window_size=4, keyframe_interval=0.0), 9, ("",)),
    "window 4, stride 2": (StreamConfig(window_size=4, stride=2, keyframe_interval=0.0, align_shared_decode=1), 8, ("",)),
    "rig of two, window 4": (StreamConfig(window_size=4, keyframe_interval=0.0, cameras=("left", "right")), 5,
                             ("left", "right")),
}


@pytest.mark.parametrize("case, pose_source", [(case, "camera") for case in sorted(CASES)]
                         + [("window 4, stride 1", "ray")])
def test_no_new_shape_after_warmup(net, case, pose_source):
    """pose_source="ray" keeps every view's features (one cross-view shape per window
    size); "camera" only the decoded ones (one per window size and decoded count)."""
    cfg, n, cameras = CASES[case]
    model = DA3WindowModel(net, precision="fp32", process_res=126, compile="staged", pose_source=pose_source)
    model.warmup(W, H, cfg.window_size)
    shapes = model._fast.new_shapes
    assert stream(model, cfg, n, cameras) > 0
    assert model.captures_after_warmup == 0
    assert model._fast.new_shapes == shapes


def test_counter_sees_a_shape_warmup_missed(net):
    """Warmed up for full windows only, a stream that fills its window meets new shapes, counted."""
    cfg, n, cameras = CASES["window 4, stride 1"]
    model = DA3WindowModel(net, precision="fp32", process_res=126, compile="staged")
    model.warmup(W, H, cfg.window_size, all_sizes=False)
    stream(model, cfg, n, cameras)
    assert model.captures_after_warmup >= cfg.window_size - 1  # windows of 1 .. window_size-1 views
