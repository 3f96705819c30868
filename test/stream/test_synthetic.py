"""The synthetic sequences: deterministic, geometrically exact, batched, and
written in the layout the offline tools read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from da3_ros.geometry import backproject, inv_se3, transform_points
from da3_ros.synthetic import SEQUENCES, load_sequence, make_sequence, write_sequence


def test_deterministic_and_seeded():
    a = make_sequence("orbit", n_frames=5, width=64, height=48, seed=2)
    b = make_sequence("orbit", n_frames=5, width=64, height=48, seed=2)
    c = make_sequence("orbit", n_frames=5, width=64, height=48, seed=3)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.depth, b.depth) and np.array_equal(a.c2w, b.c2w)
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("name", SEQUENCES)
def test_shapes_units_and_multiview_consistency(sequence_cache, name):
    seq = sequence_cache(name)
    n, h, w = len(seq), seq.height, seq.width
    assert seq.images.shape == (n, h, w, 3) and seq.images.dtype == np.uint8
    assert seq.depth.shape == (n, h, w) and seq.depth.dtype == np.float32
    assert np.all(np.isfinite(seq.depth)) and seq.depth.min() > 0.3 and seq.depth.max() < 13.0  # metres, inside the room
    np.testing.assert_allclose(np.diff(seq.stamps), 1 / 30.0, atol=1e-9)
    for T in seq.c2w[::20]:
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
    # z-depth of frame i, moved into frame j, lands on frame j's rendered z-depth
    i, j = 50, 56
    vv, uu = np.mgrid[0:h:2, 0:w:2]
    Xi = backproject(seq.depth[i][vv, uu].astype(np.float64), uu.astype(float), vv.astype(float), seq.intrinsics)
    Xj = transform_points(inv_se3(seq.c2w[j]) @ seq.c2w[i], Xi.reshape(-1, 3))
    K = seq.intrinsics
    u = np.round(K[0, 0] * Xj[:, 0] / Xj[:, 2] + K[0, 2]).astype(int)
    v = np.round(K[1, 1] * Xj[:, 1] / Xj[:, 2] + K[1, 2]).astype(int)
    inside = (Xj[:, 2] > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    rel = np.abs(seq.depth[j][v[inside], u[inside]] - Xj[inside, 2]) / Xj[inside, 2]
    assert inside.mean() > 0.5
    assert np.median(rel) < 5e-3 and np.mean(rel < 0.02) > 0.9  # misses only at edges/occlusions


def test_trajectory_kinds(sequence_cache):
    rot = sequence_cache("rotation")
    assert np.ptp(rot.c2w[:, :3, 3], axis=0).max() == 0.0  # no baseline at all
    sg = sequence_cache("stop_and_go")
    steps = np.linalg.norm(np.diff(sg.c2w[:, :3, 3], axis=0), axis=1)
    assert (steps == 0).sum() > 40 and steps.max() > 0.02  # two full stops, real motion otherwise


def test_batched_render_equals_single_frames():
    """One batched call over scenes with different box counts (padded) gives each
    camera exactly its own scene's frame: the training data path is the tests' path."""
    from da3_ros.synthetic.render import Scene, make_scene, render, render_batch, scene_tensors
    from da3_ros.synthetic.sequence import default_intrinsics
    from da3_ros.synthetic.trajectories import TRAJECTORIES

    full = make_scene(4)
    few = Scene(full.lo[:3], full.hi[:3], full.colours[:3] * 0.5, full.periods[:3], 5)
    empty = Scene(full.lo[:1], full.hi[:1], full.colours[:1], full.periods[:1], 6)
    scenes = [full, few, empty, full]
    c2w = TRAJECTORIES["orbit"](np.array([0.0, 0.3, 0.6, 0.9]), 4)
    K = default_intrinsics(80, 60)
    Ks = np.stack([K, K * [[1.2], [1.2], [1]], K, K])
    rgb, depth = render_batch(scene_tensors(scenes), torch.from_numpy(c2w), torch.from_numpy(Ks), 80, 60)
    for i, s in enumerate(scenes):
        r1, d1 = render(s, c2w[i], Ks[i], 80, 60)
        assert np.array_equal(rgb[i].numpy(), r1)
        np.testing.assert_allclose(depth[i].numpy(), d1, rtol=1e-6)
    # the empty room shows walls only; the full scene hides some wall behind boxes
    assert (depth[2] > 0).all() and not np.array_equal(depth[0].numpy(), depth[2].numpy())


def test_write_load_roundtrip_and_readers(tmp_path, sequence_cache):
    seq = sequence_cache("orbit", n_frames=12, width=64, height=48)
    d = write_sequence(seq, tmp_path / "orbit")
    back = load_sequence(d)
    assert np.array_equal(back.images, seq.images) and np.array_equal(back.depth, seq.depth)
    np.testing.assert_allclose(back.c2w, seq.c2w, atol=1e-8)
    np.testing.assert_allclose(back.stamps, seq.stamps, atol=1e-6)
    # evo reads the ground truth as TUM
    from evo.tools import file_interface

    traj = file_interface.read_tum_trajectory_file(str(d / "groundtruth.txt"))
    np.testing.assert_allclose(np.array(traj.poses_se3), seq.c2w, atol=1e-8)
    # the io layer reads the folder as a camera stream (stamps, intrinsics)
    from da3_ros.io.inputs import open_source
    from da3_ros.io.writers import read_depth_png_mm

    frames = list(open_source(d))
    assert len(frames) == 12
    np.testing.assert_allclose([f.stamp for f in frames], seq.stamps, atol=1e-6)
    np.testing.assert_allclose(frames[0].intrinsics, seq.intrinsics)
    assert np.array_equal(frames[3].image, seq.images[3])
    np.testing.assert_allclose(read_depth_png_mm(d / "depth" / "000003.png"), seq.depth[3], atol=6e-4)
    d2 = write_sequence(seq, tmp_path / "no_info", depth_png=False, camera_info=False)
    assert next(iter(open_source(d2))).intrinsics is None
