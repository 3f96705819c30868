"""Streamer behaviour at its edges: bad frames (stamps: test_timeline.py),
resolution changes, reset, a misbehaving model, the keyframe policy, handles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from da3_ros.geometry.transforms import inv_se3

from da3_ros.stream import AlignmentStatus, Frame, FrameError, ModelOutputError, StreamConfig, Streamer
from da3_ros.stream.checks import check_frame
from da3_ros.synthetic import OracleModel


def frames_of(seq):
    return list(seq.frames())


def test_config_validation():
    with pytest.raises(ValueError):
        StreamConfig(window_size=4, stride=4)
    with pytest.raises(ValueError):
        StreamConfig(min_depth=5.0, max_depth=1.0)
    with pytest.raises(TypeError):
        Streamer(object())


@pytest.mark.parametrize("bad", [
    dict(image=np.zeros((48, 64, 3), np.float32)),
    dict(image=np.zeros((48, 64), np.uint8)),
    dict(image=np.zeros((48, 64, 4), np.uint8)),
    dict(image="not an image"),
    dict(stamp=float("nan")),
    dict(intrinsics=np.eye(2)),
    dict(intrinsics=np.diag([-1.0, 1.0, 1.0])),
    dict(c2w_external=np.diag([2.0, 1.0, 1.0, 1.0])),
    dict(c2w_external=np.full((4, 4), np.nan)),
])
def test_bad_frames_rejected_without_corrupting_state(sequence_cache, bad):
    seq = sequence_cache("orbit", n_frames=20, width=64, height=48)
    fr = frames_of(seq)
    ref = Streamer(OracleModel(seq, seed=1), StreamConfig(window_size=4))
    expected = [r for f in fr for r in ref.push(f)]
    model = OracleModel(seq, seed=1)
    st = Streamer(model, StreamConfig(window_size=4))
    got = []
    for i, f in enumerate(fr):
        if i == 10:
            with pytest.raises(FrameError) as info:
                st.push(dataclasses.replace(f, **bad))
            assert isinstance(info.value, ValueError)
        got += st.push(f)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a.c2w, b.c2w)
    assert all(r.reset is None for r in got)


def test_resolution_change_keeps_the_world(sequence_cache):
    """A camera reconfigured to half resolution mid-stream: the keyframes are
    re-encoded at the new size and the next window is placed in the same world."""
    a = sequence_cache("orbit", n_frames=12, width=64, height=48)
    st = Streamer(OracleModel(a), StreamConfig(window_size=4))
    before = [r for f in frames_of(a)[:6] for r in st.push(f)]
    map_before = st.map_size

    small = sequence_cache("orbit", n_frames=12, width=32, height=24)  # the same scene and path, rendered smaller
    st.model = OracleModel(small)
    after = [r for f in frames_of(small)[6:] for r in st.push(f)]
    assert [r.index for r in after] == list(range(6, 12)) and all(r.reset is None for r in after)
    assert after[0].depth.shape == (24, 32) and st.counts["resolution_changes"] == 1 and st.n_resets == 0
    assert len(st.trajectory()) == 12 and st.map_size >= map_before
    # the same world: poses continue the ground truth relative to frame 0, at the first window's scale
    scale = float(np.median(a.depth[0] / before[0].depth))
    rel = inv_se3(a.c2w[0]) @ a.c2w
    for r in after:
        np.testing.assert_allclose(r.c2w[:3, :3], rel[r.index][:3, :3], atol=2e-3)
        assert np.linalg.norm(r.c2w[:3, 3] * scale - rel[r.index][:3, 3]) < 0.01 * np.linalg.norm(rel[r.index][:3, 3]) + 1e-3


def test_reset_clears_everything(sequence_cache):
    seq = sequence_cache("orbit", n_frames=20, width=64, height=48)
    model = OracleModel(seq)
    st = Streamer(model, StreamConfig(window_size=4))
    for f in frames_of(seq)[:10]:
        st.push(f)
    st.reset()
    assert len(st.trajectory()) == 0 and st.map_size == 0 and st.window_fill == 0 and st.world_mode is None
    assert model.live_handles == 0
    res = st.push(frames_of(seq)[10])
    assert res[0].reset == "reset_called" and res[0].alignment == AlignmentStatus.FIRST_WINDOW


def test_bad_model_output_is_reported_and_stream_continues(sequence_cache):
    seq = sequence_cache("orbit", n_frames=20, width=64, height=48)

    class Flaky(OracleModel):
        fail = False

        def predict(self, *a, **k):
            p = super().predict(*a, **k)
            if self.fail:
                p.c2w = p.c2w[:-1]
            return p

    model = Flaky(seq)
    st = Streamer(model, StreamConfig(window_size=4))
    fr = frames_of(seq)
    got = [r for f in fr[:8] for r in st.push(f)]
    model.fail = True
    with pytest.raises(ModelOutputError):
        st.push(fr[8])
    model.fail = False
    got += [r for f in fr[9:] for r in st.push(f)]
    assert [r.index for r in got] == list(range(8)) + list(range(9, 20))
    assert model.live_handles <= 4


def test_keyframe_policy(sequence_cache):
    """Keyframes follow motion; a static camera gets one per keyframe_interval."""
    seq = sequence_cache("stop_and_go", n_frames=200)
    model = OracleModel(seq)
    cfg = StreamConfig(window_size=6, keyframe_rotation_deg=5.0, keyframe_depth_ratio=0.05, keyframe_interval=0.5)
    st = Streamer(model, cfg)
    res = [r for f in seq.frames() for r in st.push(f)]
    kf = np.array([r.keyframe for r in res])
    assert kf[0]
    steps = np.r_[0.0, np.linalg.norm(np.diff(seq.c2w[:, :3, 3], axis=0), axis=1)]
    static = steps < 1e-9
    # static stretches: only the timer makes keyframes (0.5 s = 15 frames at 30 Hz)
    n_static = static.sum()
    assert kf[static].sum() <= n_static / 15 + 2
    assert kf[~static].mean() > kf[static].mean()
    # every keyframe gap in time stays under the timer (plus one frame)
    stamps = np.array([r.stamp for r in res])[kf]
    assert np.diff(stamps).max() <= 0.5 + 1 / 30 + 1e-9


def test_handles_freed_as_frames_leave(sequence_cache):
    seq = sequence_cache("orbit", n_frames=60, width=64, height=48)
    for stride in (1, 3):
        model = OracleModel(seq)
        st = Streamer(model, StreamConfig(window_size=5, stride=stride))
        for f in seq.frames():
            st.push(f)
            assert model.live_handles <= 5 and st.window_fill <= 5


def test_window_fill_and_flush(sequence_cache):
    seq = sequence_cache("forward", n_frames=10, width=64, height=48)
    st = Streamer(OracleModel(seq), StreamConfig(window_size=6, stride=4))
    fr = frames_of(seq)
    assert st.push(fr[0]) == [] and st.push(fr[1]) == [] and st.push(fr[2]) == []
    res = st.push(fr[3])
    assert [r.index for r in res] == [0, 1, 2, 3] and res[0].window_fill == 4 and res[0].window_size == 6
    res = [r for f in fr[4:8] for r in st.push(f)]
    assert [r.index for r in res] == [4, 5, 6, 7] and res[0].window_fill == 6
    assert st.push(fr[8]) == []
    tail = st.flush()
    assert [r.index for r in tail] == [8] and st.flush() == []


def test_tiny_or_foreign_frames_rejected():
    with pytest.raises(FrameError):
        check_frame(Frame(0, 0.0, np.zeros((1, 1, 3), np.uint8)))
    with pytest.raises(FrameError):
        check_frame({"stamp": 0.0})
