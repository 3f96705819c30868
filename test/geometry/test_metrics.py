"""Trajectory metrics against evo (the reference implementation), depth metrics
against hand-computed values."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from da3_ros.geometry import Sim3, ate, c2w_to_tum, depth_metrics, rotation_error, rpe, tum_to_c2w

evo_metrics = pytest.importorskip("evo.core.metrics")
from evo.core.trajectory import PoseTrajectory3D  # noqa: E402


def random_walk(rng, n=120):
    c2w = np.tile(np.eye(4), (n, 1, 1))
    R = np.eye(3)
    p = np.zeros(3)
    for i in range(n):
        R = R @ Rotation.from_rotvec(rng.normal(0, 0.05, 3)).as_matrix()
        p = p + R @ np.array([0.0, 0.0, 0.05]) + rng.normal(0, 0.01, 3)
        c2w[i, :3, :3], c2w[i, :3, 3] = R, p
    return c2w


def noisy_copy(rng, gt, sim: Sim3, t_noise=0.02, r_noise_deg=0.5):
    est = sim.apply_c2w(gt)
    for T in est:
        T[:3, :3] = Rotation.from_rotvec(np.radians(r_noise_deg) * rng.normal(size=3)).as_matrix() @ T[:3, :3]
        T[:3, 3] += t_noise * rng.normal(size=3)
    return est


def evo_traj(c2w, stamps):
    return PoseTrajectory3D(poses_se3=list(c2w), timestamps=stamps)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("align", ["sim3", "se3"])
def test_ate_matches_evo(seed, align):
    rng = np.random.default_rng(seed)
    gt = random_walk(rng)
    sim = Sim3(0.37 if align == "sim3" else 1.0, Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3))
    est = noisy_copy(rng, gt, sim.inverse())
    mine = ate(est, gt, align)
    stamps = np.arange(len(gt)) / 30.0
    ref, e = evo_traj(gt, stamps), evo_traj(est, stamps)
    e = copy.deepcopy(e)
    e.align(ref, correct_scale=(align == "sim3"))
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((ref, e))
    assert mine.rmse == pytest.approx(ape.get_statistic(evo_metrics.StatisticsType.rmse), rel=1e-6)
    assert mine.max == pytest.approx(ape.get_statistic(evo_metrics.StatisticsType.max), rel=1e-6)
    if align == "sim3":
        assert mine.alignment.scale == pytest.approx(0.37, rel=0.05)  # est = sim^-1(gt)
    assert mine.rmse > 0.01  # not trivially zero


@pytest.mark.parametrize("delta", [1, 5])
def test_rpe_matches_evo(delta):
    rng = np.random.default_rng(4)
    gt = random_walk(rng)
    est = noisy_copy(rng, gt, Sim3.identity(), t_noise=0.005, r_noise_deg=0.3)
    mine = rpe(est, gt, delta)
    stamps = np.arange(len(gt)) / 30.0
    ref, e = evo_traj(gt, stamps), evo_traj(est, stamps)
    for relation, value in ((evo_metrics.PoseRelation.translation_part, mine.trans_rmse),
                            (evo_metrics.PoseRelation.rotation_angle_deg, mine.rot_rmse_deg)):
        # every i with i+delta (evo: all_pairs=True; with False it steps by delta)
        m = evo_metrics.RPE(relation, delta=delta, delta_unit=evo_metrics.Unit.frames, all_pairs=True)
        m.process_data((ref, e))
        assert value == pytest.approx(m.get_statistic(evo_metrics.StatisticsType.rmse), rel=1e-6)
    assert mine.trans_rmse > 1e-3


def test_rpe_scale_argument():
    rng = np.random.default_rng(5)
    gt = random_walk(rng)
    est = gt.copy()
    est[:, :3, 3] *= 0.5
    assert rpe(est, gt, 1).trans_rmse > 1e-3
    assert rpe(est, gt, 1, scale=2.0).trans_rmse < 1e-12


def test_rotation_error_for_rotation_only():
    rng = np.random.default_rng(6)
    gt = random_walk(rng)
    gt[:, :3, 3] = 0.0
    est = Sim3(1.0, Rotation.random(random_state=2).as_matrix(), np.zeros(3)).apply_c2w(gt)
    assert rotation_error(est, gt)[0] < 1e-6
    est[10, :3, :3] = Rotation.from_rotvec([0, 0, np.radians(3.0)]).as_matrix() @ est[10, :3, :3]
    rmse, mx = rotation_error(est, gt)
    assert mx == pytest.approx(3.0, abs=0.1) and 0 < rmse < 1.0


def test_depth_metrics_hand_values():
    gt = np.array([[1.0, 2.0], [4.0, np.nan]])
    assert depth_metrics(gt * 1.1, gt).abs_rel == pytest.approx(0.1)
    assert depth_metrics(gt * 1.1, gt).delta1 == 1.0
    assert depth_metrics(gt * 1.3, gt).delta1 == 0.0
    pred = np.array([[1.0, 2.0], [8.0, 1.0]])  # one pixel off by 2x, one invalid in gt
    d = depth_metrics(pred, gt)
    assert d.n_pixels == 3 and d.abs_rel == pytest.approx(1 / 3) and d.delta1 == pytest.approx(2 / 3)
    assert depth_metrics(gt / 2, gt, scale=2.0).abs_rel == pytest.approx(0.0)
    assert depth_metrics(pred, gt, mask=np.array([[True, True], [False, False]])).abs_rel == 0.0


def test_tum_rows_roundtrip():
    rng = np.random.default_rng(8)
    c2w = random_walk(rng, 10)
    np.testing.assert_allclose(tum_to_c2w(c2w_to_tum(c2w)), c2w, atol=1e-12)


def test_depth_metrics_all_columns_hand_values():
    gt = np.array([1.0, 2.0, 4.0, 5.0])
    pred = np.array([1.0, 3.0, 2.4, 0.0])  # ratios 1, 1.5, 1.67 and a prediction of 0 (a miss at every delta)
    d = depth_metrics(pred, gt)
    assert d.n_pixels == 4
    assert d.abs_rel == pytest.approx((0 + 0.5 + 0.4 + 1.0) / 4)
    assert d.sq_rel == pytest.approx((0 + 1 / 2 + 2.56 / 4 + 25 / 5) / 4)
    assert d.rmse == pytest.approx(np.sqrt((0 + 1 + 2.56 + 25) / 4))
    assert (d.delta1, d.delta2, d.delta3) == (0.25, 0.5, 0.75)  # thresholds 1.25, 1.5625, 1.953
    # non-finite prediction or ground truth <= 0 / NaN: not counted
    d = depth_metrics(np.array([1.0, np.nan, 1.0]), np.array([1.0, 1.0, 0.0]))
    assert d.n_pixels == 1 and d.abs_rel == 0.0


def test_depth_error_sums_pool_pixels():
    from da3_ros.geometry.metrics import DepthErrorSums

    rng = np.random.default_rng(3)
    gts = [rng.uniform(0.5, 5, n) for n in (10, 1000, 37)]
    preds = [g * rng.uniform(0.7, 1.4, len(g)) for g in gts]
    sums = DepthErrorSums()
    per_frame = [sums.add(p, g) for p, g in zip(preds, gts)]
    pooled = depth_metrics(np.concatenate(preds), np.concatenate(gts))
    assert sums.result().as_dict() == pytest.approx(pooled.as_dict(), rel=1e-12)
    assert per_frame[1].as_dict() == pytest.approx(depth_metrics(preds[1], gts[1]).as_dict(), rel=1e-12)
    assert DepthErrorSums().result().n_pixels == 0


@pytest.mark.parametrize("kind", ["lognormal", "rounded", "mostly_one_value", "two_values", "ulps", "small"])
def test_streaming_median_is_numpy_median(kind):
    from da3_ros.geometry.metrics import StreamingMedian

    rng = np.random.default_rng(len(kind))
    n = 20001 if kind != "two_values" else 20000
    x = {"lognormal": lambda: rng.lognormal(0, 1, n),
         "rounded": lambda: np.round(rng.normal(0, 1, n), 1),
         "mostly_one_value": lambda: np.where(rng.random(n) < 0.9, 1.2345, rng.normal(size=n)),
         "two_values": lambda: np.repeat([0.0, 1.0], n // 2),
         "ulps": lambda: 1.0 + np.spacing(1.0) * rng.integers(0, 5, n),
         "small": lambda: rng.normal(size=7)}[kind]()
    chunks = np.array_split(rng.permutation(x), 9)
    m = StreamingMedian(max_keep=100, bins=16)  # tiny limits: several narrowing passes
    while True:
        for c in chunks:
            m.feed(c)
        if m.end_pass():
            break
    assert m.value == np.median(x)
    assert m.passes == 1 if kind == "small" else m.passes >= 2
    empty = StreamingMedian()
    assert empty.end_pass() and np.isnan(empty.value)


def test_depth_at_resolution_nearest_pixel():
    from da3_ros.geometry.metrics import depth_at_resolution

    d = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert depth_at_resolution(d, 2, 3) is d
    up = depth_at_resolution(d, 4, 6)
    np.testing.assert_array_equal(up[::2, ::2], d)
    np.testing.assert_array_equal(up[1::2, 1::2], d)
    np.testing.assert_array_equal(depth_at_resolution(up, 2, 3), d)


def test_relative_pose_errors_and_auc():
    from da3_ros.geometry.metrics import pose_auc, relative_pose_errors, window_pairs

    gt = np.tile(np.eye(4), (3, 1, 1))
    gt[1, :3, 3] = [1.0, 0, 0]
    gt[2, :3, 3] = [0, 0, 2.0]
    est = gt.copy()
    est[1, :3, :3] = Rotation.from_rotvec(np.radians(4.0) * np.array([0, 0, 1.0])).as_matrix()  # rot error 4 deg
    # 30 deg off the ground truth's z direction, opposite sign (a line: the sign does not count), any length
    est[2, :3, 3] = -np.array([0, np.sin(np.radians(30)), np.cos(np.radians(30))]) * 7.0
    i, j = np.array([0, 0, 1]), np.array([1, 2, 2])
    rot, trans = relative_pose_errors(est, gt, i, j)
    assert rot[0] == pytest.approx(4.0) and trans[0] == pytest.approx(0.0, abs=1e-6)
    assert rot[1] == pytest.approx(0.0, abs=1e-9) and trans[1] == pytest.approx(30.0)
    # pair (1, 2): camera 1 is rotated in the estimate, so its relative rotation is off by 4 deg too
    assert rot[2] == pytest.approx(4.0)
    # no translation in the ground truth: no direction, scores 90
    assert relative_pose_errors(est, np.tile(np.eye(4), (3, 1, 1)), i, j)[1][0] == pytest.approx(90.0)
    # AUC: mean over t = 1..T of the fraction of max(rot, trans) below t
    r, t = np.array([0.5, 1.5, 0.2, 40.0]), np.array([0.1, 0.0, 2.5, 0.0])
    assert pose_auc(r, t, 3) == pytest.approx(np.mean([1 / 4, 2 / 4, 3 / 4]))
    assert pose_auc(r, t, 30) == pytest.approx((30 + 29 + 28) / (4 * 30))
    assert np.isnan(pose_auc(np.zeros(0), np.zeros(0), 3))
    ii, jj = window_pairs([0, 1, 2, 5, 9], 4)
    assert list(zip(ii.tolist(), jj.tolist())) == [(0, 1), (0, 2), (1, 2), (2, 3)]
