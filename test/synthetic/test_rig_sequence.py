"""Synthetic rigs: cameras fixed on one moving body, rendered by the project's
renderer, geometrically exact across cameras, stamped with jitter and
drop-outs, written in the layout the offline tools read, and answered by the
exact and the noisy oracle in windows that mix cameras."""

from __future__ import annotations

import numpy as np
import pytest

from da3_ros.geometry import backproject, inv_se3, rotation_angle_deg, transform_points
from da3_ros.geometry.transforms import T_BODY_OPTICAL
from da3_ros.stream.interface import Frame
from da3_ros.synthetic import (NoisyOracleModel, OracleModel, load_rig_sequence, load_sequence, make_rig_sequence,
                               write_rig_sequence)
from da3_ros.synthetic.rig import load_ground_truth
from da3_ros.synthetic.sequence import T0
from da3_ros.synthetic.trajectories import TRAJECTORIES

W, H = 80, 60


@pytest.fixture(scope="module")
def stereo():
    return make_rig_sequence("stereo", "forward", n_frames=12, width=W, height=H)


@pytest.fixture(scope="module")
def three():
    return make_rig_sequence("three", "orbit", n_frames=12, width=W, height=H, jitter=0.002,
                             dropouts={"right": (4, 8)})


def test_extrinsics_of_the_layouts(stereo, three):
    # stereo: same orientation, 10 cm apart along the body's y (left is +y)
    T = stereo.relative_extrinsics("left", "right")
    np.testing.assert_allclose(T[:3, :3], np.eye(3), atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [0.1, 0.0, 0.0], atol=1e-12)  # right is +x in the left optical frame
    ext = three.extrinsics
    for name, yaw in (("left", 60.0), ("front", 0.0), ("right", -60.0)):
        R_body = ext[name][:3, :3] @ T_BODY_OPTICAL[:3, :3].T  # the camera's body axes in the base frame
        forward = R_body[:, 0]
        np.testing.assert_allclose(forward, [np.cos(np.radians(yaw)), np.sin(np.radians(yaw)), 0.0], atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(ext[name][:3, 3]), 0.15, atol=1e-12)
    assert abs(float(rotation_angle_deg(three.relative_extrinsics("left", "right")[:3, :3])) - 120.0) < 1e-9
    assert three.cameras[0].optical_frame == "left_optical_frame" and three.base_frame == "base_link"


def test_poses_follow_the_body_and_views_the_ground_truth(stereo, three):
    for rig in (stereo, three):
        for v in range(0, len(rig.stamps), 5):
            cam = rig.cameras[rig.view_camera[v]]
            np.testing.assert_allclose(rig.c2w[v], rig.base_c2w[rig.view_frame[v]] @ cam.T_base_optical, atol=1e-12)
    # the body looks where the trajectory's camera looks (its x is that camera's
    # optical z) and does not roll (its y stays level)
    for rig, trajectory in ((stereo, "forward"), (three, "orbit")):
        traj = TRAJECTORIES[trajectory](np.linspace(0.0, 1.0, len(rig)), 0)
        np.testing.assert_allclose(rig.base_c2w[:, :3, 0], traj[:, :3, 2], atol=1e-12)
        np.testing.assert_allclose(rig.base_c2w[:, :3, 3], traj[:, :3, 3], atol=1e-12)
        np.testing.assert_allclose(rig.base_c2w[:, 2, 1], 0.0, atol=1e-12)
    assert len(three) == 12 and len(three.stamps) == 3 * 12 - 4
    assert three.view(5, "right") is None and three.view(5, "left") is not None
    assert set(three.view_frame[three.view_camera == 2].tolist()) == set(range(12)) - {4, 5, 6, 7}


@pytest.mark.parametrize("pair", [("left", "right"), ("left", "front"), ("front", "right")])
def test_cameras_of_one_rig_frame_see_one_scene(stereo, three, pair):
    """Depth of one camera moved into another camera of the same rig frame lands
    on that camera's rendered depth and colour: images, depth and extrinsics
    agree (with the baseline flipped the colours differ by ~30 grey levels)."""
    rig = stereo if pair == ("left", "right") else three
    K = rig.cameras[0].intrinsics
    a, b = pair
    for i in (2, 9):
        va, vb = rig.view(i, a), rig.view(i, b)
        vv, uu = np.mgrid[0:H, 0:W]
        X = backproject(rig.depth[va][vv, uu].astype(np.float64), uu.astype(float), vv.astype(float), K)
        Xb = transform_points(inv_se3(rig.relative_extrinsics(a, b)), X.reshape(-1, 3))
        u = np.round(K[0, 0] * Xb[:, 0] / Xb[:, 2] + K[0, 2]).astype(int)
        v = np.round(K[1, 1] * Xb[:, 1] / Xb[:, 2] + K[1, 2]).astype(int)
        inside = (Xb[:, 2] > 0) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        rel = np.abs(rig.depth[vb][v[inside], u[inside]] - Xb[inside, 2]) / Xb[inside, 2]
        # stereo: most of the view is shared; 60 degrees apart with a 64 degree field of view: a sliver
        assert inside.mean() > (0.8 if rig is stereo else 0.01), (a, b, inside.mean())
        assert np.median(rel) < 5e-3 and np.mean(rel < 0.02) > 0.95, (a, b, np.median(rel))
        colour = np.abs(rig.images[va].reshape(-1, 3)[inside].astype(int) - rig.images[vb][v[inside], u[inside]]).mean()
        assert colour < 10.0, (a, b, colour)
        assert not np.array_equal(rig.images[va], rig.images[vb])


def test_stamps_jitter_and_arrival_order(stereo, three):
    np.testing.assert_allclose(stereo.stamps, stereo.rig_stamps[stereo.view_frame], atol=0)
    np.testing.assert_allclose(stereo.rig_stamps, T0 + np.arange(12) / 30.0, atol=1e-12)
    dt = three.stamps - three.rig_stamps[three.view_frame]
    assert np.abs(dt).max() <= 0.002 and np.abs(dt).min() > 0 and np.std(dt) > 0.0005
    order = three.arrival_order()
    assert np.all(np.diff(three.stamps[order]) >= 0) and sorted(order.tolist()) == list(range(len(three.stamps)))
    # same stamps: camera order breaks ties
    assert stereo.view_camera[stereo.arrival_order()[:2]].tolist() == [0, 1]
    frames = list(three.frames(with_intrinsics=True, with_extrinsics=True))
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [three.camera_index(f.camera) for f in frames] == three.view_camera[order].tolist()
    assert all(np.array_equal(f.image, three.images[v]) and f.stamp == three.stamps[v] for f, v in zip(frames, order))
    assert all(np.array_equal(f.T_base_optical, three.extrinsics[f.camera]) for f in frames)
    assert all(np.array_equal(f.intrinsics, three.cameras[three.camera_index(f.camera)].intrinsics) for f in frames)
    # the ground-truth grouping, as Streamer.push_rig takes it
    groups = list(three.rig_frames())
    assert len(groups) == 12 and [len(g) for g in groups] == [3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3]
    assert [f.camera for f in groups[5]] == ["left", "front"]
    assert [f.index for g in groups for f in g] == list(range(len(three.stamps)))


def test_deterministic():
    a = make_rig_sequence("stereo", "rotation", n_frames=3, width=32, height=24, seed=1, jitter=0.001)
    b = make_rig_sequence("stereo", "rotation", n_frames=3, width=32, height=24, seed=1, jitter=0.001)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.stamps, b.stamps)
    with pytest.raises(ValueError):
        make_rig_sequence("stereo", "nowhere")


def test_write_load_roundtrip(tmp_path, three):
    d = write_rig_sequence(three, tmp_path / "rig")
    back = load_rig_sequence(d)
    assert back.camera_names == three.camera_names and back.base_frame == three.base_frame
    assert np.array_equal(back.images, three.images) and np.array_equal(back.depth, three.depth)
    assert np.array_equal(back.view_camera, three.view_camera) and np.array_equal(back.view_frame, three.view_frame)
    np.testing.assert_allclose(back.c2w, three.c2w, atol=1e-8)
    np.testing.assert_allclose(back.stamps, three.stamps, atol=1e-6)
    np.testing.assert_allclose(back.base_c2w, three.base_c2w, atol=1e-8)
    for name in three.camera_names:
        np.testing.assert_allclose(back.extrinsics[name], three.extrinsics[name], atol=1e-15)
    # each camera's folder is a single-camera sequence folder (run-offline's --input)
    right = load_sequence(d / "right")
    assert len(right) == 8 and np.array_equal(right.images, three.camera_sequence("right").images)
    assert isinstance(load_ground_truth(d), type(three)) and not isinstance(load_ground_truth(d / "right"), type(three))
    # the oracle reads the rig folder
    m = OracleModel(str(d))
    v = three.view(3, "front")
    h = m.encode(Frame(index=0, stamp=float(three.stamps[v]), image=three.images[v]))
    assert h.gt_index == v


def rig_window(rig, views):
    return [Frame(index=i, stamp=float(rig.stamps[v]), image=rig.images[v]) for i, v in enumerate(views)]


def test_oracle_answers_a_window_across_cameras(stereo):
    """Views of two cameras with the same stamps: the oracle tells them apart by
    the image and answers exact poses (relative to the window's first view, at
    its per-window scale), depth and each camera's own intrinsics."""
    rig = make_rig_sequence("stereo", "forward", n_frames=6, width=W, height=H,
                            intrinsics={"right": np.array([[70.0, 0, 40.0], [0, 70.0, 29.0], [0, 0, 1]])})
    views = [rig.view(i, c) for i in (2, 3, 4) for c in ("left", "right")]
    frames = rig_window(rig, views)
    assert frames[0].stamp == frames[1].stamp
    m = OracleModel(rig, max_scale=3.0, seed=1)
    handles = [m.encode(f) for f in frames]
    assert [h.gt_index for h in handles] == views
    # a frame that names its camera is found by name and stamp
    assert [m.encode(rig.frame(v)).gt_index for v in views] == views
    with pytest.raises(KeyError):
        m.encode(Frame(index=0, stamp=float(rig.stamps[views[0]]), image=rig.images[views[0]], camera="middle"))
    pred = m.predict(frames, handles, decode=[1, 4])
    s = pred.extras["scale"]
    assert s != 1.0
    for j, v in enumerate(views):
        expect = inv_se3(rig.c2w[views[0]]) @ rig.c2w[v]
        expect[:3, 3] *= s
        np.testing.assert_allclose(pred.c2w[j], expect, atol=1e-12)
        np.testing.assert_allclose(pred.intrinsics[j], rig.cameras[rig.view_camera[v]].intrinsics)
    assert pred.intrinsics[1][0, 0] == 70.0 and pred.intrinsics[0][0, 0] == 0.8 * W
    np.testing.assert_allclose(pred.depth[1], rig.depth[views[1]] * s, rtol=1e-6)
    np.testing.assert_allclose(pred.depth[4], rig.depth[views[4]] * s, rtol=1e-6)
    # the stereo baseline in the window: 0.1 m at the window's scale
    np.testing.assert_allclose(np.linalg.norm(pred.c2w[1, :3, 3] - pred.c2w[0, :3, 3]), 0.1 * s, rtol=1e-12)
    with pytest.raises(KeyError):
        m.encode(Frame(index=0, stamp=123.0, image=rig.images[0]))


def test_noisy_oracle_answers_a_rig_window(three):
    views = [v for v in range(len(three.stamps)) if three.view_frame[v] in (2, 3)]
    frames = rig_window(three, views)
    m = NoisyOracleModel(three, seed=2)
    pred = m.predict(frames, [m.encode(f) for f in frames], decode=[0])
    s = pred.extras["scale"]
    gt = inv_se3(three.c2w[views[0]]) @ three.c2w[views]
    err_t = np.linalg.norm(pred.c2w[:, :3, 3] / s - gt[:, :3, 3], axis=1)
    err_r = rotation_angle_deg(np.swapaxes(gt[:, :3, :3], 1, 2) @ pred.c2w[:, :3, :3])
    # per view: 0.3 % of the median depth (~3.5 m) per axis and 0.2 deg per axis
    assert err_t[0] == 0.0 and 0.002 < np.median(err_t[1:]) < 0.05, err_t
    assert 0.05 < np.median(err_r[1:]) < 1.0, err_r
