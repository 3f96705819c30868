"""The node (over DDS), process-bag and run-offline are shells over one
streaming session: the same rig bag through each gives the same depth per
camera and the same poses.

The rig's cameras are up to 8 ms apart (jitter 4 ms), beyond the default
rig_sync_tolerance (5 ms): all three front ends are given 10 ms, and every rig
frame must come out complete from each, so a front end that grouped by its own
rule (as run-offline once did, ignoring the setting) fails here."""

from __future__ import annotations

import numpy as np
import pytest

from da3_ros.geometry.transforms import inv_se3
from da3_ros.io.writers import read_tum
from da3_ros.ros.conversions import image_to_depth, stamp_to_ns
from da3_ros.synthetic.oracle import OracleModel
from da3_ros.synthetic.rig import make_rig_sequence, write_rig_bag, write_rig_sequence
from node_harness import read_output, stamp_ns

#: the settings every front end gets (non-default where it matters)
SETTINGS = dict(window_size=9, rig_sync_tolerance=0.01, min_confidence=0.0, min_depth=0.01, max_depth=100.0)
#: the exact metric oracle answers in float64 and the outputs are float32: relative error ~1e-7
RTOL = 1e-5


@pytest.fixture(scope="module")
def rig():
    return make_rig_sequence("three", "forward", n_frames=12, width=48, height=32, jitter=0.004, seed=5)


def _model(rig):
    return OracleModel(rig, metric=True)  # metres from the first window: no rescaling mid-run


def _relative(poses):
    """Each pose relative to the first (removes the choice of world origin)."""
    first = inv_se3(poses[0])
    return np.array([first @ T for T in poses])


def _by_view(rig):
    """view index -> (camera, stamp ns), and the views in the order run-offline indexes them."""
    views = {v: (rig.camera_names[rig.view_camera[v]], stamp_ns(rig.stamps[v])) for v in range(len(rig.stamps))}
    order = sorted(views, key=lambda v: (float(rig.stamps[v]), views[v][0]))
    return views, order


def _base_poses_from_optical(rig, c2w):
    """The primary camera's c2w (optical) -> the base frame's pose, as odometry gives it."""
    T_bo = rig.cameras[0].T_base_optical
    return np.array([T @ inv_se3(T_bo) for T in c2w])


def run_process_bag(rig, tmp_path):
    from da3_ros.ros.params import default_config
    from da3_ros.ros.process_bag import run_process_bag as run

    cfg = default_config(cameras=rig.camera_names, base_frame=rig.base_frame, **SETTINGS)
    summary = run(tmp_path / "bag", tmp_path / "pb", cfg, model=_model(rig), progress=False)
    assert summary["rig"]["complete"] == len(rig), summary["rig"]
    out, _ = read_output(tmp_path / "pb")
    depth = {}
    for c in rig.camera_names:
        for _, msg in out[f"/da3/{c}/depth/image"]:
            depth[(c, stamp_to_ns(msg.header.stamp))] = image_to_depth(msg)
    odom = [_pose(msg.pose.pose) for _, msg in out["/da3/odometry"]]
    return depth, np.array(odom)


def _pose(pose):
    from da3_ros.ros.conversions import pose_to_matrix

    return pose_to_matrix(pose)


def run_offline(rig, tmp_path):
    from da3_ros.runtime import offline

    views, order = _by_view(rig)
    args = ["--input", str(tmp_path / "bag"), "--model", f"oracle-metric:{tmp_path / 'gt'}", "--out",
            str(tmp_path / "off"), "--cameras", ",".join(rig.camera_names), "--base-frame", rig.base_frame, "--quiet"]
    for name, value in SETTINGS.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    assert offline.main(args) == 0
    depth = {}
    for index, v in enumerate(order):
        camera, ns = views[v]
        depth[(camera, ns)] = np.load(tmp_path / "off" / "depth" / f"{camera}_{index:06d}.npy")
    _, c2w = read_tum(tmp_path / "off" / "trajectory.tum")
    return depth, _base_poses_from_optical(rig, c2w)


def run_node(rig, tmp_path, ros_context, make_node):
    from test_node_rig import publish_tf_static, send_rig_frame, start, views_of

    node, io, cameras, recorders, body, spinner = start(
        ros_context, make_node, rig, _model(rig), tmp_path, base_frame=rig.base_frame, point_decimation=4,
        **{k: v for k, v in SETTINGS.items()})
    try:
        publish_tf_static(io, rig, spinner, node)
        for k in range(len(rig)):
            send_rig_frame(rig, cameras, k)
            # every view answered before the next rig frame goes: the node drops nothing
            assert spinner.wait_for(lambda: all(stamp_ns(rig.stamps[v]) in recorders[c].stamps("depth/image")
                                                for c, v in views_of(rig, k).items()), 10.0), f"rig frame {k}"
        assert spinner.wait_for(lambda: len(body.stamps("odometry")) == len(rig), 5.0)
        assert node.pipeline.session.sync.stats()["complete"] == len(rig)
        depth = {}
        for c in rig.camera_names:
            for ns in recorders[c].stamps("depth/image"):
                depth[(c, ns)] = image_to_depth(recorders[c].at("depth/image", ns))
        odom = [_pose(body.at("odometry", ns).pose.pose) for ns in body.stamps("odometry")]
        return depth, np.array(odom)
    finally:
        node.destroy_node()


def test_node_process_bag_and_run_offline_agree(rig, tmp_path, ros_context, make_node):
    write_rig_bag(rig, tmp_path / "bag", "")
    write_rig_sequence(rig, tmp_path / "gt")
    results = {"process-bag": run_process_bag(rig, tmp_path),
               "run-offline": run_offline(rig, tmp_path),
               "node": run_node(rig, tmp_path, ros_context, make_node)}
    ref_depth, ref_poses = results["process-bag"]
    assert len(ref_depth) == len(rig.stamps) and len(ref_poses) == len(rig)
    for name, (depth, poses) in results.items():
        assert set(depth) == set(ref_depth), name
        for key, d in depth.items():
            ok = np.isfinite(ref_depth[key]) & np.isfinite(d)
            assert ok.mean() > 0.9, (name, key)
            np.testing.assert_allclose(d[ok], ref_depth[key][ok], rtol=RTOL, err_msg=f"{name} {key}")
        assert len(poses) == len(rig), name
        np.testing.assert_allclose(_relative(poses), _relative(ref_poses), atol=1e-6, err_msg=name)
    # and the answer is the ground truth (metres, per camera)
    views, _ = _by_view(rig)
    for v, key in views.items():
        ok = np.isfinite(ref_depth[key])
        np.testing.assert_allclose(ref_depth[key][ok], rig.depth[v][ok], rtol=RTOL)
