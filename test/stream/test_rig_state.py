"""The rig's state as the streaming core reports it, per camera: no calibration;
calibration found, estimate pending; estimate rejected (the model's baseline
disagrees with the calibration in direction or length); metric. Checked with
the oracles on synthetic rigs, whose true extrinsics are known, and with
calibrations made wrong on purpose."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from da3_ros.geometry.transforms import make_se3
from da3_ros.stream import StreamConfig, Streamer
from da3_ros.stream.rig import RIG_STATES
from da3_ros.stream.rig_scale import RigScaleEstimator
from da3_ros.synthetic import NoisyOracleModel, OracleModel, make_rig_sequence


@pytest.fixture(scope="module")
def stereo():
    return make_rig_sequence("stereo", "forward", n_frames=24, width=64, height=48, seed=3)


def stream(rig, model, extrinsics=None, n=None):
    """Every rig frame (the first n) into a Streamer; `extrinsics`: camera ->
    T_base_optical to claim instead of the true one (None: none at all)."""
    cfg = StreamConfig(window_size=4 * len(rig.camera_names), stride=1, cameras=tuple(rig.camera_names))
    st = Streamer(model, cfg)
    for k, frames in enumerate(rig.rig_frames(with_intrinsics=True, with_extrinsics=extrinsics is not None)):
        if n is not None and k >= n:
            break
        if extrinsics is not None:
            frames = [replace(f, T_base_optical=extrinsics.get(f.camera, f.T_base_optical)) for f in frames]
        st.push_rig(frames)
    return st


def mirrored(rig, camera):
    """The camera's calibration with its position mirrored through the first camera's
    (a right camera claimed on the far left): its baseline then points the other way."""
    T = rig.extrinsics[camera].copy()
    T[:3, 3] = 2 * rig.extrinsics[rig.camera_names[0]][:3, 3] - T[:3, 3]
    return T


def test_no_calibration(stereo):
    st = stream(stereo, OracleModel(stereo, max_scale=3.0, seed=1))
    state = st.rig.state()
    assert state.state == "no_calibration" and not st.metric
    assert {c.state for c in state.cameras.values()} == {"no_calibration"}
    status = st.rig.status()
    assert status["state"] == status["left_state"] == status["right_state"] == "no_calibration"
    assert "no extrinsics" in status["right"]


def test_pending_then_metric(stereo):
    model = OracleModel(stereo, max_scale=3.0, seed=1)
    st = stream(stereo, model, extrinsics={}, n=5)  # fewer rig frames than rig_scale_min_frames
    status = st.rig.status()
    assert status["state"] == status["left_state"] == "pending", status
    assert "rig frames seen 5 (needs >= 10)" in status["left"] and "relative error" in status["left"]
    st = stream(stereo, OracleModel(stereo, max_scale=3.0, seed=1), extrinsics={})
    state = st.rig.state()
    assert state.state == "metric" and st.metric
    assert all(c.state == "metric" for c in state.cameras.values())
    assert f"{st.rig.metres_per_unit:.5f} metres per first-window unit" in state.cameras["left"].detail
    saved = json.loads(json.dumps(st.rig.to_dict()))  # what ~/save writes to rig.json
    assert saved["state"]["state"] == "metric" and saved["state"]["cameras"]["right"]["state"] == "metric"


def test_baseline_the_wrong_way_is_rejected_and_said(stereo):
    """The calibration claims the right camera on the left: the model (exact poses)
    disagrees by 180 degrees; the world stays relative and the state says why."""
    st = stream(stereo, OracleModel(stereo, max_scale=3.0, seed=1), extrinsics={"right": mirrored(stereo, "right")})
    state = st.rig.state()
    assert state.state == "rejected" and not st.metric and st.rig.metres_per_unit is None
    for c in ("left", "right"):
        assert state.cameras[c].state == "rejected"
        assert "points 180 deg away from the calibration's" in state.cameras[c].detail, state.cameras[c].detail
    (pair,) = state.pairs
    assert not pair.accepted and pair.angle_deg == pytest.approx(180.0, abs=1.0)


def test_noisy_model_the_wrong_way_on_three_cameras():
    """Three cameras, the right one's calibration mirrored (it claims to look left
    from the left camera's place): its pairs disagree in direction; the left-front
    pair still gives the scale, so the world turns metric with the right camera
    reported as rejected."""
    rig = make_rig_sequence("three", "forward", n_frames=24, width=64, height=48, seed=5)
    T = rig.extrinsics["right"].copy()
    T[:3, 3] = -T[:3, 3]  # a camera behind the body centre: both its baselines point far off
    st = stream(rig, NoisyOracleModel(rig, max_scale=3.0, seed=2), extrinsics={"right": T})
    state = st.rig.state()
    assert state.cameras["right"].state == "rejected" and "deg away" in state.cameras["right"].detail
    assert state.cameras["left"].state in ("pending", "metric") and state.cameras["front"].state in ("pending", "metric")
    assert [p.accepted for p in state.pairs] == [True, False, False]


def test_length_that_disagrees_with_the_other_baselines():
    """Three cameras on a line (calibrated 0, 0.1 and 0.3 m); the model puts the
    middle one at 0.2: its two baselines are 100 % long and 50 % short against the
    unit the third pair gives, so both are rejected and the middle camera with them."""
    calib = {c: make_se3(np.eye(3), np.array([x, 0.0, 0.0])) for c, x in (("a", 0.0), ("b", 0.1), ("c", 0.3))}
    est = RigScaleEstimator(calib)
    model = {c: make_se3(np.eye(3), np.array([x, 0.0, 0.0])) for c, x in (("a", 0.0), ("b", 0.2), ("c", 0.3))}
    for _ in range(12):
        est.add(model)
    checks = {(p.a, p.b): p for p in est.check(10)}
    assert checks[("a", "c")].accepted and checks[("a", "c")].length_error == pytest.approx(0.0, abs=1e-9)
    assert not checks[("a", "b")].accepted and checks[("a", "b")].length_error == pytest.approx(1.0)
    assert not checks[("b", "c")].accepted and checks[("b", "c")].length_error == pytest.approx(-0.5)
    assert "+100 % off the length" in checks[("a", "b")].reason
    assert est.estimate([i for i, p in enumerate(est.check(10)) if p.accepted]).scale == pytest.approx(1.0)
    # judged only once a pair has min_observations: before, every pair counts
    assert all(p.accepted for p in est.check(13))


def test_states_are_the_documented_ones(stereo):
    st = stream(stereo, OracleModel(stereo, max_scale=3.0, seed=1), extrinsics={}, n=3)
    assert st.rig.state().state in RIG_STATES and RIG_STATES == ("no_calibration", "pending", "rejected", "metric")
