"""Bounded memory: 2,000 frames through the window, map and trajectory."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from da3_ros.stream import StreamConfig, Streamer
from da3_ros.synthetic import OracleModel


def test_two_thousand_frames_stay_bounded(sequence_cache):
    seq = sequence_cache("orbit", n_frames=2000, width=64, height=48)
    model = OracleModel(seq)
    cfg = StreamConfig(window_size=6, stride=2, map_voxel_size=0.02, map_max_points=3000, map_from="all",
                       map_pixel_stride=2, path_max_length=500)
    st = Streamer(model, cfg)
    frames = list(seq.frames())
    held = []
    tracemalloc.start()
    try:
        for i, f in enumerate(frames):
            for r in st.push(f):
                del r  # a consumer that publishes and forgets
            assert model.live_handles <= cfg.window_size and st.window_fill <= cfg.window_size
            if i in (999, 1999):
                gc.collect()
                held.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert st.map_size == cfg.map_max_points  # saturated, and capped
    xyz, rgb = st.map_points()
    assert xyz.shape == (cfg.map_max_points, 3) and rgb.shape == (cfg.map_max_points, 3)
    traj = st.trajectory()
    assert len(traj) == cfg.path_max_length
    np.testing.assert_array_equal(traj.indices, np.arange(2000 - cfg.path_max_length, 2000))  # the newest kept, in order
    assert np.all(np.diff(traj.stamps) > 0)
    # the second thousand frames did not grow the heap (slack: 1 MiB)
    assert held[1] - held[0] < 1 << 20, f"heap grew by {(held[1] - held[0]) / 1024:.0f} KiB over 1000 frames"
    # over the cap the oldest voxels went first: what is left was seen late
    assert st.world._map.ticks().min() > 0.9 * st.n_windows
    assert len(st._keyframes) <= cfg.window_size - cfg.stride
