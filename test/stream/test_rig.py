"""Multi-camera rigs in the streaming core: rig frames from N cameras' stamps,
the metric scale from a calibrated rig, extrinsics estimated from the model's
poses. Checked against the synthetic rigs' ground truth, through the exact and
the noisy oracle."""

from __future__ import annotations

import json
from typing import Dict, List

import numpy as np
import pytest

from da3_ros.geometry import inv_se3, rotation_angle_deg
from da3_ros.stream.interface import Frame
from da3_ros.stream.rig_extrinsics import RigExtrinsicsEstimator
from da3_ros.stream.rig_scale import RigScaleEstimator
from da3_ros.stream.rig_sync import RigSynchronizer
from da3_ros.synthetic import NoisyOracleModel, OracleModel, make_rig_sequence

#: the stream's world unit in these tests: world units per metre (anything but 1)
UNIT = 0.37


@pytest.fixture(scope="module")
def rigs():
    cache = {}

    def get(layout, trajectory="forward", n_frames=31, **kw):
        key = (layout, trajectory, n_frames, repr(sorted(kw.items())))
        if key not in cache:
            cache[key] = make_rig_sequence(layout, trajectory, n_frames=n_frames, width=64, height=48, **kw)
        return cache[key]

    return get


# -- rig frames ----------------------------------------------------------------

def synchronize(rig, sync: RigSynchronizer, order=None):
    """Push the rig's views in arrival order; returns (rig frame, stamp of the
    image whose push released it (None: flush)) in release order."""
    out = []
    for v in (rig.arrival_order() if order is None else order):
        for rf in sync.push(rig.camera_names[rig.view_camera[v]], rig.stamps[v], int(v)):
            out.append((rf, float(rig.stamps[v])))
    out += [(rf, None) for rf in sync.flush()]
    return out


def rig_frame_of(rig, rf) -> int:
    frames = {int(rig.view_frame[v.data]) for v in rf.views.values()}
    assert len(frames) == 1, f"one rig frame mixes views of rig frames {sorted(frames)}"
    return frames.pop()


@pytest.mark.parametrize("layout", ["stereo", "three"])
def test_jittered_stamps_group_into_the_true_rig_frames(rigs, layout):
    rig = rigs(layout, jitter=0.002)  # two cameras differ by up to 4 ms
    assert np.abs(np.diff(rig.stamps[rig.view_frame == 3])).max() > 1e-4  # the stamps really differ
    sync = RigSynchronizer(rig.camera_names, tolerance=0.005)
    out = synchronize(rig, sync)
    assert [rig_frame_of(rig, rf) for rf, _ in out] == list(range(len(rig)))
    assert all(rf.complete and list(rf.views) == rig.camera_names for rf, _ in out)
    for rf, _ in out:
        assert rf.stamp == next(iter(rf.views.values())).stamp  # the first camera's, as push_rig takes it
        assert all(v.stamp == rig.stamps[v.data] and v.camera == rig.camera_names[rig.view_camera[v.data]]
                   for v in rf.views.values())
    # a complete rig frame goes out with its last view: no waiting
    assert all(at is not None and at - rf.stamp <= 0.004 + 1e-9 for rf, at in out)
    assert sync.stats() == {"complete": len(rig), "incomplete": 0, "restarts": 0, "pending": 0,
                            **{f"dropped_{r}": 0 for r in RigSynchronizer.DROP_REASONS},
                            **{f"missing_{c}": 0 for c in rig.camera_names}}


def test_jitter_beyond_the_tolerance_splits_rig_frames(rigs):
    """The same stream with a tolerance below its jitter does not group (the
    grouping test above can fail)."""
    rig = rigs("stereo", jitter=0.004)
    out = synchronize(rig, RigSynchronizer(rig.camera_names, tolerance=0.001))
    assert sum(not rf.complete for rf, _ in out) > 5


def test_a_camera_dropping_out_neither_stalls_the_others_nor_mixes_rig_frames(rigs):
    rig = rigs("three", jitter=0.002, dropouts={"right": (10, 26)})
    max_wait = 0.1
    sync = RigSynchronizer(rig.camera_names, tolerance=0.005, max_wait=max_wait, max_pending=8)
    out = synchronize(rig, sync)
    assert [rig_frame_of(rig, rf) for rf, _ in out] == list(range(len(rig)))  # every rig frame answered, in order
    missing = [i for i, (rf, _) in enumerate(out) if not rf.complete]
    # back after 16 silent rig frames (0.53 s, more than 10 frame intervals): its first
    # image is held by its Timeline (a stamp jump until the next image confirms it), so
    # rig frame 26 still goes without it
    assert missing == list(range(10, 27)) and all(out[i][0].missing == ("right",) for i in missing)
    assert list(out[9][0].views) == list(out[27][0].views) == rig.camera_names  # back after the stretch
    lags = np.array([at - rf.stamp for rf, at in out])
    # the first rig frame without it waits max_wait of stamp time at most; once the
    # camera is silent for longer, the others go out as soon as they are in
    assert lags.max() <= max_wait + 1 / 30 + 0.004, lags.max()
    assert np.all(lags[14:26] <= 0.004 + 1e-9), lags[10:26]
    assert sync.n_incomplete == 17 and sync.missing_counts == {"left": 0, "front": 0, "right": 17}
    assert sync.pending == 0 and sync.cameras_out == ()  # back in


def test_a_camera_that_never_publishes(rigs):
    rig = rigs("stereo", dropouts={"right": (0, 31)})
    out = synchronize(rig, RigSynchronizer(rig.camera_names, max_wait=0.1))
    assert [rig_frame_of(rig, rf) for rf, _ in out] == list(range(len(rig)))
    assert all(rf.missing == ("right",) for rf, _ in out)
    lags = np.array([at - rf.stamp for rf, at in out])
    assert lags.max() <= 0.1 + 1 / 30 + 1e-9 and np.all(lags[5:] == 0.0)


def test_late_views_are_waited_for_within_max_wait(rigs):
    """One camera's messages arrive two rig frames late (transport delay): still
    grouped, since 2/30 s < max_wait."""
    rig = rigs("stereo")
    order = sorted(rig.arrival_order(), key=lambda v: rig.stamps[v] + (2 / 30 + 0.001) * (rig.view_camera[v] == 1))
    out = synchronize(rig, RigSynchronizer(rig.camera_names, max_wait=0.1), order)
    assert [rig_frame_of(rig, rf) for rf, _ in out] == list(range(len(rig)))
    assert all(rf.complete for rf, _ in out)


def test_memory_bounded_when_stamps_never_match(rigs):
    """Stamps 15 ms apart with a 5 ms tolerance never group: every image is
    answered alone, at most max_pending rig frames wait."""
    sync = RigSynchronizer(["a", "b"], tolerance=0.005, max_wait=10.0, max_pending=3)
    released = []
    for i in range(200):
        t = 1000.0 + i / 30
        released += sync.push("a", t, i)
        released += sync.push("b", t + 0.015, i)
        assert sync.pending <= 3
    released += sync.flush()
    assert len(released) == 400 and all(len(rf.views) == 1 for rf in released)
    assert np.all(np.diff([rf.stamp for rf in released]) > 0)


def two_camera_steps(sync, steps, offset=0.0):
    """Rig frames i of cameras a and b (b 1 ms after a); returns what they release."""
    out = []
    for i in steps:
        t = 1000.0 + i / 30 + offset
        out += sync.push("a", t, i) + sync.push("b", t + 0.001, i)
    return out


def test_duplicates_outliers_and_a_looping_bag():
    """Each camera's stamps pass the stream's Timeline: a duplicate or a single
    outlier is dropped and counted without holding up the rig; a real restart
    of time is followed."""
    sync = RigSynchronizer(["a", "b"], tolerance=0.005, max_wait=0.1)
    out = two_camera_steps(sync, range(10))
    assert len(out) == 10 and sync.n_complete == 10
    assert sync.push("b", 1000.0 + 9 / 30 + 0.001, "again") == [] and sync.dropped["duplicate_stamp"] == 1
    # an image stamped in the past (a delayed message), then one 100 s ahead (a glitch)
    assert sync.push("a", 1000.1, "delayed") == [] and sync.push("b", 1100.0, "glitch") == []
    out = two_camera_steps(sync, range(10, 13))
    assert [rf.views["a"].data for rf in out] == [10, 11, 12] and all(rf.complete for rf in out)
    assert sync.dropped["stamp_backwards_outlier"] == 1 and sync.dropped["stamp_forward_outlier"] == 1
    assert sync.restarts == 0 and sync.pending == 0
    # a looping bag: each camera's second image on the new timeline confirms it
    out = two_camera_steps(sync, range(5))
    assert sync.restarts == 1
    assert [rf.views["a"].data for rf in out] == list(range(5)) and all(rf.complete for rf in out)
    assert [rf.stamp for rf in out] == [1000.0 + i / 30 for i in range(5)]
    # the rig paused for 20 s (beyond max_forward_jump_s): followed, nothing lost
    out = two_camera_steps(sync, range(5, 10), offset=20.0)
    assert [rf.views["b"].data for rf in out] == list(range(5, 10)) and all(rf.complete for rf in out)
    assert sync.restarts == 1 and sum(sync.dropped.values()) == 3
    with pytest.raises(KeyError):
        sync.push("c", 2000.0)
    with pytest.raises(ValueError):
        sync.push("a", float("nan"))
    with pytest.raises(ValueError):
        RigSynchronizer(["a", "a"])


def test_late_view_and_a_glitch_within_the_forward_jump():
    sync = RigSynchronizer(["a", "b"], tolerance=0.005, max_wait=0.1)
    two_camera_steps(sync, range(3))
    # b stalls for 4 rig frames: rig frame 3 waits max_wait for it, then b is out
    # and 4..7 go at once; b's image of rig frame 3 then comes too late for it, but
    # says b lives: rig frame 8 waits for b again
    out = []
    for i in range(3, 8):
        out += sync.push("a", 1000.0 + i / 30, i)
    assert [rf.views["a"].data for rf in out] == [3, 4, 5, 6, 7] and all(rf.missing == ("b",) for rf in out)
    assert sync.cameras_out == ("b",)
    assert sync.push("b", 1000.0 + 3 / 30 + 0.001, 3) == []
    assert sync.dropped["late_view"] == 1 and sync.cameras_out == ()
    out = two_camera_steps(sync, [8])
    assert [sorted(rf.views) for rf in out] == [["a", "b"]]
    # an image 0.5 s ahead (15 frame intervals: a jump for the camera's Timeline,
    # though within max_forward_jump_s) is held; b's next image shows it was a
    # glitch: dropped, no restart, no rig frame lost
    two_camera_steps(sync, range(9, 10))
    assert sync.push("b", 1000.0 + 10 / 30 + 0.5, "early") == []
    out = two_camera_steps(sync, range(10, 14))
    assert sync.restarts == 0 and sync.dropped["stamp_forward_outlier"] == 1
    assert [rf.views["b"].data for rf in out] == [10, 11, 12, 13] and all(rf.complete for rf in out)


# -- windows of the oracle over rig frames --------------------------------------

def rig_window_observations(model, rig, n_rig_frames: int, rig_frames_per_window: int) -> List[List[Dict[str, np.ndarray]]]:
    """Run the model like the stream would over a rig: window t holds the views
    of rig frames t-K+1..t (K = rig_frames_per_window), each view encoded once.
    Returns per window, per rig frame in it, camera -> c2w in a stream world of
    UNIT units per metre (the oracle's per-window scale taken out exactly: the
    Streamer's alignment does that job in the node)."""
    names = rig.camera_names
    handles = {}
    out = []
    for t in range(n_rig_frames):
        views = np.flatnonzero((rig.view_frame > t - rig_frames_per_window) & (rig.view_frame <= t))
        frames = [Frame(index=int(v), stamp=float(rig.stamps[v]), image=rig.images[v]) for v in views]
        for v, f in zip(views, frames):
            if v not in handles:
                handles[v] = model.encode(f)
        pred = model.predict(frames, [handles[v] for v in views], [])
        c2w = pred.c2w.copy()
        c2w[:, :3, 3] *= UNIT / pred.extras["scale"]
        out.append([{names[rig.view_camera[v]]: c2w[j] for j, v in enumerate(views) if rig.view_frame[v] == rf}
                    for rf in sorted(set(rig.view_frame[views].tolist()))])
    return out


def scale_after(model, rig, n_rig_frames, rig_frames_per_window, **kw):
    est = RigScaleEstimator(rig.extrinsics, **kw)
    for window in rig_window_observations(model, rig, n_rig_frames, rig_frames_per_window):
        for poses in window:
            est.add(poses)
    return est, est.estimate()


@pytest.mark.parametrize("layout", ["stereo", "three"])
def test_rig_scale_exact_oracle(rigs, layout):
    rig = rigs(layout)
    est, s = scale_after(OracleModel(rig, max_scale=3.0, seed=2), rig, 3, 2)
    assert s.n_measurements == s.n_inliers == {"stereo": 1, "three": 3}[layout] * 5
    assert abs(s.scale * UNIT - 1.0) < 1e-9 and s.std_error < 1e-9 and s.spread < 1e-9
    # one rig frame suffices
    one = RigScaleEstimator(rig.extrinsics)
    one.add(rig_window_observations(OracleModel(rig, max_scale=3.0), rig, 1, 1)[0][0])
    assert abs(one.estimate().scale * UNIT - 1.0) < 1e-9


def test_rig_scale_noisy_three_cameras_within_one_percent_after_30_rig_frames(rigs):
    """Noisy oracle (pose noise per view: 0.2 deg, 0.3 % of the scene depth, here
    ~12-15 mm), baselines 0.15-0.26 m, windows of 4 rig frames (12 views): the
    scale from 30 rig frames is within 1 % (RMS over seeds; about 0.5 % 1-sigma,
    so a single seed can come near 1 %), each seed within its reported
    uncertainty."""
    rig = rigs("three")
    errors, ses = [], []
    for seed in range(6):
        _, s = scale_after(NoisyOracleModel(rig, seed=seed), rig, 30, 4)
        errors.append(s.scale * UNIT - 1.0)
        ses.append(s.std_error)
    errors, ses = np.array(errors), np.array(ses)
    msg = f"errors {np.round(errors * 100, 2)} %, std errors {np.round(ses * 100, 2)} %"
    print("three cameras, 30 rig frames:", msg)
    assert np.sqrt(np.mean(errors ** 2)) < 0.01, msg
    assert np.all(np.abs(errors) < 3.5 * ses) and np.all(ses < 0.008), msg


def test_rig_scale_noisy_stereo_10cm(rigs):
    """The 10 cm stereo pair under the same pose noise: one baseline measures
    0.1 m against ~15 mm of noise along it (~15 % each), so 30 rig frames (114
    measurements) leave ~1-1.5 % and 1 % takes about 4 times as many rig frames.
    The estimator says so: its reported uncertainty covers the error and falls
    as 1 / sqrt(rig frames)."""
    rig = rigs("stereo", "orbit", n_frames=121)
    ses = {}
    for n in (30, 120):
        errors, ses[n] = [], []
        for seed in range(4):
            _, s = scale_after(NoisyOracleModel(rig, seed=seed), rig, n, 4)
            errors.append(s.scale * UNIT - 1.0)
            ses[n].append(s.std_error)
        errors, ses[n] = np.array(errors), np.array(ses[n])
        msg = f"stereo, {n} rig frames: errors {np.round(errors * 100, 2)} %, std errors {np.round(ses[n] * 100, 2)} %"
        print(msg)
        assert np.all(np.abs(errors) < 3.5 * ses[n]), msg
    assert np.all((ses[30] > 0.008) & (ses[30] < 0.02)), ses[30]
    assert np.all(ses[120] < 0.008), ses[120]
    np.testing.assert_allclose(ses[120] / ses[30], 0.5, atol=0.12)


def test_rig_scale_rejects_outliers(rigs):
    """A tenth of the rig frames with a camera pose far off (a failed view)
    leave the scale where the clean run puts it."""
    rig = rigs("three")
    windows = rig_window_observations(NoisyOracleModel(rig, seed=1), rig, 30, 4)
    clean, dirty = RigScaleEstimator(rig.extrinsics), RigScaleEstimator(rig.extrinsics)
    rng = np.random.default_rng(0)
    n_bad = 0
    for window in windows:
        for poses in window:
            clean.add(poses)
            if rng.random() < 0.1:
                poses = dict(poses)
                cam = rig.camera_names[rng.integers(3)]
                poses[cam] = poses[cam].copy()
                poses[cam][:3, 3] += rng.normal(size=3) * 0.5 * UNIT  # half a metre off
                n_bad += 1
            dirty.add(poses)
    c, d = clean.estimate(), dirty.estimate()
    assert n_bad > 5
    assert d.n_inliers < c.n_inliers
    assert abs(d.scale / c.scale - 1.0) < 0.003, (c, d)
    assert abs(d.scale * UNIT - 1.0) < 0.01


def test_rig_scale_needs_a_baseline():
    T = np.eye(4)
    with pytest.raises(ValueError, match="cannot give a scale"):
        RigScaleEstimator({"a": T, "b": T})
    est = RigScaleEstimator({"a": T, "b": np.array([[1, 0, 0, 0.1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])},
                            history=5)
    assert est.estimate() is None and est.add({"a": np.eye(4)}) == 0  # one camera: no baseline
    for i in range(20):
        b = np.eye(4)
        b[0, 3] = 0.2  # the model says 0.2 units for 0.1 m
        assert est.add({"a": np.eye(4), "b": b}) == 1
    assert len(est) == 5  # bounded history
    assert abs(est.estimate().scale - 0.5) < 1e-12


# -- extrinsics from the model's poses --------------------------------------------

def extrinsics_after(model, rig, n_rig_frames, rig_frames_per_window):
    est = RigExtrinsicsEstimator(rig.camera_names)
    for window in rig_window_observations(model, rig, n_rig_frames, rig_frames_per_window):
        for poses in window:
            est.add(poses)
    return est


@pytest.mark.parametrize("layout", ["stereo", "three"])
def test_extrinsics_estimated_exact_oracle(rigs, layout):
    rig = rigs(layout)
    est = extrinsics_after(OracleModel(rig, max_scale=3.0), rig, 4, 2)
    got = est.estimate()
    assert set(got) == set(rig.camera_names[1:])
    for cam, e in got.items():
        gt = rig.relative_extrinsics(rig.camera_names[0], cam)
        np.testing.assert_allclose(e.in_metres(1.0 / UNIT), gt, atol=1e-9)
        assert e.reference == rig.camera_names[0] and e.n_observations == e.n_inliers == 7
        assert e.translation_spread < 1e-9 and e.rotation_spread_deg < 1e-6


def test_extrinsics_estimated_noisy_oracle_and_exported(rigs):
    rig = rigs("three")
    est = extrinsics_after(NoisyOracleModel(rig, seed=4), rig, 30, 2)
    for cam, e in est.estimate().items():
        gt = rig.relative_extrinsics("left", cam)
        T = e.in_metres(1.0 / UNIT)
        rot_err = float(rotation_angle_deg(gt[:3, :3].T @ T[:3, :3]))
        trans_err = float(np.linalg.norm(T[:3, 3] - gt[:3, 3]))
        print(f"{cam}: rotation error {rot_err:.3f} deg, translation error {trans_err * 1000:.1f} mm, "
              f"spread {e.rotation_spread_deg:.2f} deg / {e.translation_spread / UNIT * 1000:.1f} mm")
        # per-view noise 0.2 deg and ~15 mm, 59 observations
        assert rot_err < 0.15 and trans_err < 0.008
        assert rot_err < 4 * e.rotation_std_error_deg + 0.01 and trans_err < 4 * e.translation_std_error / UNIT
    # the result file: plain JSON, metres when a scale is given
    d = json.loads(json.dumps(est.to_dict(scale=1.0 / UNIT)))
    assert d["reference_camera"] == "left" and d["unit"] == "metres" and set(d["cameras"]) == {"front", "right"}
    right = d["cameras"]["right"]
    gt = rig.relative_extrinsics("left", "right")
    assert right["parent"] == "left" and right["observations"] == 59
    assert np.linalg.norm(np.array(right["translation"]) - gt[:3, 3]) < 0.008
    from scipy.spatial.transform import Rotation
    q = Rotation.from_matrix(gt[:3, :3]).as_quat()
    assert min(np.linalg.norm(np.array(right["rotation_xyzw"]) - q), np.linalg.norm(np.array(right["rotation_xyzw"]) + q)) < 0.003
    raw = est.to_dict()
    assert raw["unit"] == "stream" and raw["metres_per_unit"] is None
    np.testing.assert_allclose(np.array(raw["cameras"]["right"]["translation"]) / UNIT, right["translation"], rtol=1e-12)


def test_extrinsics_reject_outliers_and_need_the_reference():
    gt = np.eye(4)
    gt[:3, 3] = [0.3, 0.0, 0.0]
    est = RigExtrinsicsEstimator(["a", "b"], history=50)
    rng = np.random.default_rng(1)
    for i in range(60):
        base = np.eye(4)
        base[:3, 3] = rng.normal(size=3)
        b = base @ gt
        if i % 10 == 3:  # a view far off: 30 degrees, 1 unit
            b = b @ np.array([[1, 0, 0, 1.0], [0, np.cos(0.5), -np.sin(0.5), 0], [0, np.sin(0.5), np.cos(0.5), 0], [0, 0, 0, 1]])
        assert est.add({"a": base, "b": b}) == 1
    assert est.add({"b": np.eye(4)}) == 0  # without the reference camera nothing to add
    e = est.estimate()["b"]
    assert e.n_observations == 50 and e.n_inliers == 45
    np.testing.assert_allclose(e.T_reference_camera, gt, atol=1e-9)
    est.reset()
    assert est.estimate() == {}


# -- the pieces together -----------------------------------------------------------

def test_synchronized_rig_frames_feed_the_oracle_and_the_scale(rigs):
    """A jittered three-camera rig with a camera out for a stretch: the
    synchronizer's rig frames (incomplete ones too) make windows the exact
    oracle answers; the scale from the baselines present is exact."""
    rig = rigs("three", jitter=0.002, dropouts={"front": (5, 15)})
    model = OracleModel(rig, max_scale=3.0, seed=3)
    sync = RigSynchronizer(rig.camera_names)
    est = RigScaleEstimator(rig.extrinsics)
    recent: List = []
    n_windows = 0
    for rf, _ in synchronize(rig, sync):
        recent = (recent + [rf])[-2:]
        views = [v for r in recent for v in r.views.values()]
        frames = [Frame(index=int(v.data), stamp=v.stamp, image=rig.images[v.data]) for v in views]
        pred = model.predict(frames, [model.encode(f) for f in frames], [len(frames) - 1])
        n_windows += 1
        gt = rig.c2w[views[0].data]
        for j, v in enumerate(views):  # poses relative to the reference view, at the window's scale
            expect = inv_se3(gt) @ rig.c2w[v.data]
            expect[:3, 3] *= pred.extras["scale"]
            np.testing.assert_allclose(pred.c2w[j], expect, atol=1e-9)
        np.testing.assert_allclose(pred.depth[len(frames) - 1], rig.depth[views[-1].data] * pred.extras["scale"], rtol=1e-6)
        c2w = pred.c2w.copy()
        c2w[:, :3, 3] *= UNIT / pred.extras["scale"]
        first = len(recent[0].views) if len(recent) == 2 else 0
        est.add({v.camera: c2w[first + j] for j, v in enumerate(recent[-1].views.values())})
    # "front" is out for rig frames 5..14, and its first image back (a stamp jump of 11
    # frame intervals for its Timeline) is held, so rig frame 15 goes without it too
    assert n_windows == len(rig) and sync.n_incomplete == 11 and sync.missing_counts["front"] == 11
    s = est.estimate()
    assert s.n_measurements == 3 * 20 + 1 * 11  # a rig frame without "front" still measures left-right
    assert abs(s.scale * UNIT - 1.0) < 1e-9


def test_rig_frames_through_the_streamer(rigs):
    """The synchronizer's rig frames into Streamer.push_rig with the exact
    relative oracle: one network call per rig frame, every camera's depth and
    pose exact in the stream frame, a camera out for a stretch neither stalls
    nor resets the world, and the rig's scale and extrinsics come out exact
    from the answered poses."""
    from da3_ros.stream import StreamConfig, Streamer

    rig = rigs("three", n_frames=40, jitter=0.002, dropouts={"right": (12, 22)})
    model = OracleModel(rig, max_scale=3.0, seed=4)
    streamer = Streamer(model, StreamConfig(window_size=9, stride=1))
    sync = RigSynchronizer(rig.camera_names)
    scale, extrinsics = RigScaleEstimator(rig.extrinsics), RigExtrinsicsEstimator(rig.camera_names)
    results, n_rig_frames, index = [], 0, 0
    for rf, _ in synchronize(rig, sync):
        frames = []
        for v in rf.views.values():
            frames.append(rig.frame(v.data, index))
            index += 1
        answered = streamer.push_rig(frames)
        n_rig_frames += 1
        by_view = {int(f.index): int(v.data) for f, v in zip(frames, rf.views.values())}
        poses = {}
        for r in answered:
            results.append((by_view[r.index], r))
            poses[rig.camera_names[rig.view_camera[by_view[r.index]]]] = r.c2w
        scale.add(poses)
        extrinsics.add(poses)
    assert n_rig_frames == len(rig) == model.n_predict  # one network call per rig frame
    # "right" is out for rig frames 12..21; its first image back is held (a stamp jump
    # for its Timeline) and so comes too late for rig frame 22
    assert streamer.n_resets == 0 and sync.n_incomplete == 11
    answered_views = sorted(v for v, _ in results)
    late = rig.view(22, "right")
    assert answered_views == [v for v in range(len(rig.stamps)) if v != late]  # every view answered once
    # the stream frame: the first window's reference view (left, rig frame 0) at
    # that window's scale (read from the float32 depth: exact to ~1e-7)
    v0 = rig.view(0, "left")
    units_per_metre = float(np.median(results[0][1].depth / rig.depth[v0]))
    for v, r in results:
        expect = inv_se3(rig.c2w[v0]) @ rig.c2w[v]
        expect[:3, 3] *= units_per_metre
        np.testing.assert_allclose(r.c2w, expect, atol=1e-6)
        np.testing.assert_allclose(r.depth, rig.depth[v] * units_per_metre, rtol=1e-5)
        assert r.stamp == rig.stamps[v]
    s = scale.estimate()
    assert s.n_measurements == 3 * 29 + 11 and abs(s.scale * units_per_metre - 1.0) < 1e-6 and s.std_error < 1e-6
    for cam, e in extrinsics.estimate().items():
        np.testing.assert_allclose(e.in_metres(1.0 / units_per_metre), rig.relative_extrinsics("left", cam), atol=1e-6)


def test_rig_calibration_from_windows(rigs):
    """RigCalibration fed like the Streamer would (every window's views, keyed
    by rig frame): the scale from /tf_static extrinsics when the frames carry
    them, the extrinsics relative to the first camera in any case, one JSON."""
    from da3_ros.stream.rig import RigCalibration

    rig = rigs("three")
    model = OracleModel(rig, max_scale=3.0, seed=6)
    with_tf, without_tf = RigCalibration(rig.camera_names), RigCalibration(rig.camera_names)
    handles = {}
    for t in range(6):
        views = np.flatnonzero((rig.view_frame > t - 3) & (rig.view_frame <= t))
        frames = [rig.frame(int(v), with_extrinsics=True) for v in views]
        for v, f in zip(views, frames):
            handles.setdefault(v, model.encode(f))
        pred = model.predict(frames, [handles[v] for v in views], [])
        c2w = pred.c2w.copy()
        c2w[:, :3, 3] *= UNIT / pred.extras["scale"]
        with_tf.observe([(int(rig.view_frame[v]), f, T) for v, f, T in zip(views, frames, c2w)])
        bare = [Frame(index=f.index, stamp=f.stamp, image=f.image, camera=f.camera) for f in frames]
        without_tf.observe([(int(rig.view_frame[v]), f, T) for v, f, T in zip(views, bare, c2w)])
    s = with_tf.scale()
    assert s.n_measurements == 3 * (1 + 2 + 3 * 4) and abs(s.scale * UNIT - 1.0) < 1e-9
    assert without_tf.scale() is None
    for cal in (with_tf, without_tf):
        for cam, e in cal.extrinsics().items():
            np.testing.assert_allclose(e.in_metres(1.0 / UNIT), rig.relative_extrinsics("left", cam), atol=1e-9)
    d = json.loads(json.dumps(with_tf.to_dict()))
    assert d["cameras"] == rig.camera_names and abs(d["scale"]["metres_per_unit"] * UNIT - 1.0) < 1e-9
    assert d["extrinsics"]["unit"] == "metres"
    np.testing.assert_allclose(d["extrinsics"]["cameras"]["front"]["translation"],
                               rig.relative_extrinsics("left", "front")[:3, 3], atol=1e-9)
    bare_dict = without_tf.to_dict()
    assert bare_dict["scale"] is None and bare_dict["extrinsics"]["unit"] == "stream"
    # /tf_static changes (the rig was re-calibrated): the scale starts over with the new baselines
    moved = rig.frame(rig.view(0, "right"), with_extrinsics=True)
    moved.T_base_optical = moved.T_base_optical.copy()
    moved.T_base_optical[1, 3] -= 0.05
    with_tf.observe([(0, moved, np.eye(4))])
    assert with_tf.scale() is None
    with_tf.reset()
    assert with_tf.extrinsics() == {}


# -- the Streamer learns the rig -----------------------------------------------------

def test_streamer_turns_metric_from_the_rig_baselines(rigs):
    """A relative model (the noisy oracle: DA3-like pose and depth errors, an
    arbitrary scale per window) on a calibrated three-camera rig: within 30 rig
    frames the Streamer turns its world metric from the /tf_static baselines.
    The published depth's scale error over the last 5 rig frames, RMS over 5
    seeds, is below 1% (each seed below 2%: one rig of 30 frames is a small sample)."""
    from da3_ros.stream import StreamConfig, Streamer
    from da3_ros.synthetic.oracle import NoisyOracleModel

    rig = rigs("three", n_frames=30)
    errors = []
    for seed in range(11, 16):
        cfg = StreamConfig(window_size=12, stride=1, cameras=tuple(rig.camera_names))
        streamer = Streamer(NoisyOracleModel(rig, max_scale=3.0, seed=seed), cfg)
        ratios = []
        for k, frames in enumerate(rig.rig_frames(with_extrinsics=True, with_intrinsics=True)):
            results = streamer.push_rig(frames)
            if k >= len(rig) - 5:
                assert all(r.metric for r in results)
                ratios += [np.median(rig.depth[rig.view(k, f.camera)] / r.depth) for f, r in zip(frames, results)]
        assert 1 <= streamer.counts["rig_scale_updates"] <= 3 and streamer.metric
        errors.append(float(np.median(ratios)) - 1.0)
    assert np.sqrt(np.mean(np.square(errors))) < 0.01 and max(map(abs, errors)) < 0.02, errors


def test_streamer_estimates_extrinsics_without_tf_static(rigs):
    """No /tf_static: no metric scale, but each camera's pose relative to the first,
    as the exact oracle's poses give it (stream units)."""
    from da3_ros.stream import StreamConfig, Streamer

    rig = rigs("three", n_frames=12)
    streamer = Streamer(OracleModel(rig, max_scale=3.0, seed=2),
                        StreamConfig(window_size=9, stride=1, cameras=tuple(rig.camera_names)))
    results = []
    for frames in rig.rig_frames():
        results += streamer.push_rig(frames)
    assert not streamer.metric and streamer.rig.metres_per_unit is None
    v0 = rig.view(0, "left")
    units_per_metre = float(np.median(results[0].depth / rig.depth[v0]))
    estimate = streamer.rig.extrinsics()
    assert set(estimate) == {"front", "right"}
    for cam, e in estimate.items():
        np.testing.assert_allclose(e.in_metres(1.0 / units_per_metre), rig.relative_extrinsics("left", cam), atol=1e-6)
    assert streamer.rig.to_dict()["extrinsics"]["unit"] == "stream"
