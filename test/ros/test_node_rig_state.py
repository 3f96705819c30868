"""The rig's scale state as da3_node reports it on /diagnostics (and in rig.json),
over real DDS: a stereo rig whose calibration is missing from /tf_static, one
whose calibration the model disagrees with, and one whose calibration holds."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from std_srvs.srv import Trigger

from da3_ros.synthetic.oracle import OracleModel
from da3_ros.synthetic.rig import make_rig_sequence
from test_node_rig import answered, publish_tf_static, send_rig_frame, start


@pytest.fixture(scope="module")
def stereo():
    return make_rig_sequence("stereo", "forward", n_frames=14, width=64, height=48, seed=9)


def diagnostics(body):
    """The node's last /diagnostics values."""
    msgs = body.by_topic.get("/diagnostics") or []
    return {kv.key: kv.value for kv in msgs[-1].status[0].values} if msgs else {}


def send_all(rig, cameras, recorders, spinner):
    for k in range(len(rig)):
        for _ in range(10):  # best effort may drop a view: send the rig frame again
            send_rig_frame(rig, cameras, k)
            if spinner.wait_for(lambda: answered(recorders, rig, k), 1.0):
                break
        assert answered(recorders, rig, k), f"rig frame {k} unanswered"


def test_no_calibration_on_tf_static(ros_context, make_node, stereo, tmp_path):
    """base_frame set, nothing on /tf_static: each camera's images wait for it, and
    /diagnostics says, per camera, which transform was looked for."""
    rig = stereo
    node, io, cameras, recorders, body, spinner = start(ros_context, make_node, rig, OracleModel(rig), tmp_path,
                                                        base_frame=rig.base_frame)
    try:
        for k in range(3):
            send_rig_frame(rig, cameras, k)

        def said():
            d = diagnostics(body)
            return d.get("rig_left_state") == "no_calibration" and "right_optical_frame" in d.get("rig_right", "")
        assert spinner.wait_for(said, 10.0), diagnostics(body)
        d = diagnostics(body)
        assert d["rig_state"] == "no_calibration" and d["rig_right_state"] == "no_calibration"
        for c in rig.camera_names:
            assert d[f"rig_{c}"] == (f"no calibration: /tf_static has no transform {rig.base_frame} -> {c}_optical_frame "
                                     "(its images are skipped)")
        assert d["scale"] == "relative (first window's unit)" and d["rig_metres_per_unit"] == "n/a"
        assert not recorders["left"].stamps("depth/image")  # nothing answered without the calibration
    finally:
        spinner.shutdown()
        node.destroy_node()


@pytest.mark.parametrize("calibration", ["true", "right_on_the_left"])
def test_calibration_held_or_rejected(ros_context, make_node, stereo, tmp_path, calibration):
    """With the true calibration the rig turns metric (diagnostics: metric, metres
    per unit); with the right camera claimed 5 cm left of the left one, the model
    (exact poses) says the baseline points the other way: rejected, by 180 deg,
    and the world stays in the first window's unit."""
    rig = stereo
    claimed = rig  # what /tf_static says
    if calibration == "right_on_the_left":
        left, right = rig.cameras
        T = right.T_base_optical.copy()
        T[:3, 3] = 2 * left.T_base_optical[:3, 3] - T[:3, 3]
        claimed = replace(rig, cameras=[left, replace(right, T_base_optical=T)])
    model = OracleModel(rig, max_scale=3.0, seed=1)  # relative: an arbitrary unit per window
    node, io, cameras, recorders, body, spinner = start(ros_context, make_node, rig, model, tmp_path,
                                                        base_frame=rig.base_frame)
    try:
        publish_tf_static(io, claimed, spinner, node)
        send_all(rig, cameras, recorders, spinner)
        want = "metric" if calibration == "true" else "rejected"
        assert spinner.wait_for(lambda: diagnostics(body).get("rig_state") == want, 5.0), diagnostics(body).get("rig_state")
        d = diagnostics(body)
        assert d["rig_left_state"] == d["rig_right_state"] == want
        saved_response = node._on_save(Trigger.Request(), Trigger.Response())
        assert saved_response.success
        saved = json.loads((tmp_path / "saved" / "rig.json").read_text())
        assert saved["state"]["state"] == want
        if want == "metric":  # after rig_scale_min_frames rig frames (the node may drop some: newest wins)
            assert int(d["rig_frames_seen"]) >= 10
            metres = float(d["rig_metres_per_unit"])
            assert metres > 0 and d["scale"] == "metric (metres)"
            assert d["rig_left"].startswith(f"{metres:.5f} metres per first-window unit")
            assert saved["state"]["cameras"]["right"]["state"] == "metric"
        else:
            for c in rig.camera_names:
                assert "the model's baseline left->right points 180 deg away from the calibration's" in d[f"rig_{c}"]
            assert d["scale"] == "relative (first window's unit)" and d["rig_metres_per_unit"] == "n/a"
            (pair,) = saved["state"]["pairs"]  # judged once the pair has 10 observations (rig frames x windows)
            assert not pair["accepted"] and pair["angle_deg"] == pytest.approx(180.0, abs=1.0)
            assert pair["observations"] >= 10
            assert not node.pipeline.streamer.metric
    finally:
        spinner.shutdown()
        node.destroy_node()
