"""Streamer behaviour at its edges: bad frames, time going backwards,
resolution changes, reset, a misbehaving model, the keyframe policy, handles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from da3_ros.stream import AlignmentStatus, Frame, FrameError, ModelOutputError, StreamConfig, Streamer
from da3_ros.synthetic import OracleModel


def frames_of(seq):
    return list(seq.frames())


def test_config_validation():
    with pytest.raises(ValueError):
        StreamConfig(window_size=4, stride=4)
    with pytest.raises(ValueError):
        StreamConfig(depth_range=(5.0, 1.0))
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


def test_time_backwards_resets(sequence_cache):
    seq = sequence_cache("forward", n_frames=30, width=64, height=48)
    st = Streamer(OracleModel(seq), StreamConfig(window_size=4))
    fr = frames_of(seq)
    out = [r for f in fr[:20] for r in st.push(f)]
    assert len(st.trajectory()) == 20 and st.map_size > 0
    # the bag loops: frame 5 comes again after frame 19
    again = [r for f in fr[5:15] for r in st.push(dataclasses.replace(f, index=100 + f.index))]
    assert again[0].reset == "time_backwards" and all(r.reset is None for r in again[1:])
    assert again[0].alignment == AlignmentStatus.FIRST_WINDOW
    np.testing.assert_allclose(again[0].c2w, np.eye(4), atol=1e-12)  # a new world at the new first frame
    assert len(st.trajectory()) == 10 and st.n_resets == 1
    assert out[0].reset is None


def test_resolution_change_resets(sequence_cache):
    a = sequence_cache("orbit", n_frames=10, width=64, height=48)
    st = Streamer(OracleModel(a), StreamConfig(window_size=4))
    for f in frames_of(a)[:5]:
        st.push(f)
    f = frames_of(a)[5]
    small = dataclasses.replace(f, image=np.ascontiguousarray(f.image[::2, ::2]))

    class Resize(OracleModel):  # the oracle at half resolution (same stamps)
        def predict(self, frames, handles, decode, intrinsics=None, c2w=None):
            p = super().predict(frames, handles, decode, intrinsics, c2w)
            p.depth = {k: np.ascontiguousarray(v[::2, ::2]) for k, v in p.depth.items()}
            p.confidence = {k: np.ascontiguousarray(v[::2, ::2]) for k, v in p.confidence.items()}
            return p

    st.model = Resize(a)
    res = st.push(small)
    assert res[0].reset == "resolution_change" and res[0].depth.shape == (24, 32)


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
    """Keyframes follow motion; a static camera gets one per keyframe_max_seconds."""
    seq = sequence_cache("stop_and_go", n_frames=200)
    model = OracleModel(seq)
    cfg = StreamConfig(window_size=6, keyframe_rotation_deg=5.0, keyframe_translation_depth_ratio=0.05, keyframe_max_seconds=0.5)
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
        Streamer._validate(Frame(0, 0.0, np.zeros((1, 1, 3), np.uint8)))
    with pytest.raises(FrameError):
        Streamer._validate({"stamp": 0.0})
