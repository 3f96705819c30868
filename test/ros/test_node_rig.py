"""One da3_node, several cameras, over real DDS: a rig renders its views, the
test publishes them per camera (with /tf_static for the extrinsics) as drivers
would, and what comes back per camera must be the ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from da3_ros.geometry.transforms import inv_se3
from da3_ros.ros.conversions import (array_to_image, image_to_depth, intrinsics_to_camera_info, matrix_to_transform,
                                     ns_to_stamp, pose_to_matrix, stamp_to_ns, transform_to_matrix)
from da3_ros.synthetic.oracle import OracleModel
from da3_ros.synthetic.rig import make_rig_sequence
from node_harness import Camera, Recorder, Spinner, stamp_ns


@pytest.fixture(scope="module")
def three():
    return make_rig_sequence("three", "forward", n_frames=26, width=64, height=48, jitter=0.002,
                             dropouts={"right": (14, 20)}, seed=7)


def start(ros_context, make_node, rig, model, tmp_path, **params):
    from da3_ros.ros.node import Da3Node

    values = {"cameras": rig.camera_names, "window_size": 3 * len(rig.camera_names), "min_confidence": 0.0,
              "min_depth": 0.01, "max_depth": 100.0, "point_decimation": 2, "diagnostics_period": 0.2,
              "map_publish_period": 0.2, "save_directory": str(tmp_path / "saved"), **params}
    node = Da3Node(model=model, context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    io = make_node("test_rig_io")
    cameras = {c: Camera(io, namespace=c) for c in rig.camera_names}
    recorders = {c: Recorder(io, namespace=c) for c in rig.camera_names}
    body = Recorder(io)
    spinner = Spinner(ros_context, node, io)
    assert spinner.wait_for(lambda: all(io.count_subscribers(f"{c}/image") > 0 for c in rig.camera_names)
                            and node.count_subscribers("left/depth/image") > 0, 10.0)
    return node, io, cameras, recorders, body, spinner


def publish_tf_static(io, rig, spinner, node):
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    pub = io.create_publisher(TFMessage, "/tf_static", latched)
    msg = TFMessage(transforms=[TransformStamped(child_frame_id=cam.optical_frame, transform=matrix_to_transform(cam.T_base_optical))
                                for cam in rig.cameras])
    for t in msg.transforms:
        t.header.frame_id = rig.base_frame
    pub.publish(msg)
    assert spinner.wait_for(lambda: node.static_tf.lookup(rig.base_frame, rig.cameras[-1].optical_frame) is not None, 5.0)
    return pub


def send_rig_frame(rig, cameras, k):
    """Every view of rig frame k, per camera, in arrival order (with its CameraInfo)."""
    for v in np.flatnonzero(rig.view_frame == k):
        cam = rig.cameras[rig.view_camera[v]]
        h = Header(stamp=ns_to_stamp(stamp_ns(rig.stamps[v])), frame_id=cam.optical_frame)
        cameras[cam.name].info_pub.publish(intrinsics_to_camera_info(cam.intrinsics, rig.width, rig.height, h))
        cameras[cam.name].publish(array_to_image(np.ascontiguousarray(rig.images[v]), "rgb8", h))


def views_of(rig, k):
    return {rig.cameras[rig.view_camera[v]].name: int(v) for v in np.flatnonzero(rig.view_frame == k)}


def answered(recorders, rig, k):
    return all(stamp_ns(rig.stamps[v]) in recorders[c].stamps("depth/image") for c, v in views_of(rig, k).items())


def delivered(recorders, body, rig, k):
    """Every message of answered rig frame k is in: each camera's depth and
    camera_info, and the rig's odometry and /tf at its first camera's stamp. Each
    topic has its own DDS reader and the recorder's executor runs three threads:
    a frame's depth images can be taken before its odometry or /tf."""
    views = views_of(rig, k)
    first = stamp_ns(rig.stamps[views["left"]])
    return (answered(recorders, rig, k)
            and all(stamp_ns(rig.stamps[v]) in recorders[c].stamps("depth/camera_info") for c, v in views.items())
            and first in body.stamps("odometry") and body.at("/tf", first) is not None)


def test_three_cameras_one_node(ros_context, make_node, three, tmp_path):
    rig = three
    model = OracleModel(rig, max_scale=3.0, seed=1)  # relative: an arbitrary unit per window
    node, io, cameras, recorders, body, spinner = start(ros_context, make_node, rig, model, tmp_path,
                                                        base_frame=rig.base_frame)
    try:
        publish_tf_static(io, rig, spinner, node)
        dropout = [k for k in range(len(rig)) if "right" not in views_of(rig, k)]
        assert dropout == [14, 15, 16, 17, 18, 19]
        for k in range(len(rig)):
            if k in (14, 15, 16, 17):
                # right went silent: rig frame 14 waits for it max_wait (0.1 s) of stamp
                # time, i.e. until the others' images 0.1 s newer come (rig frame 18);
                # then right counts as out and the rig frames go without waiting
                received = node.stats.received
                send_rig_frame(rig, cameras, k)
                assert spinner.wait_for(lambda: node.stats.received >= received + 2 and node.slot.empty, 5.0)
                continue
            for _ in range(10):  # best effort may drop a view: send the rig frame again
                send_rig_frame(rig, cameras, k)
                if spinner.wait_for(lambda: answered(recorders, rig, k), 1.0):
                    break
            assert answered(recorders, rig, k), f"rig frame {k} unanswered: {views_of(rig, k)}"
        answered_frames = [k for k in range(len(rig)) if answered(recorders, rig, k)]
        assert set(range(len(rig))) - {14, 15, 16, 17} <= set(answered_frames)  # 18, 19: without right
        # the other topics of the last answered rig frames may still be on their way
        assert spinner.wait_for(lambda: all(delivered(recorders, body, rig, k) for k in answered_frames), 5.0), \
            [k for k in answered_frames if not delivered(recorders, body, rig, k)]
        assert node.pipeline.session.counts["rig_frames_dropped"] >= 1  # 14..17 released together with 18: the newest won
        # one network call per answered rig frame (the others were stale when released: newest wins)
        streamer = node.pipeline.streamer
        assert model.n_predict == streamer.n_windows == len(body.stamps("odometry")), (model.n_predict, answered_frames)
        assert streamer.n_resets == 0 and streamer.metric and streamer.counts["rig_scale_updates"] >= 1
        assert node.pipeline.session.sync.stats()["missing_right"] >= 4

        # per camera, once metric: depth is the rendered depth in metres, in the camera's
        # optical frame, at its own image's stamp
        for k in range(21, len(rig)):
            for c, v in views_of(rig, k).items():
                msg = recorders[c].at("depth/image", stamp_ns(rig.stamps[v]))
                assert msg.header.frame_id == rig.cameras[rig.camera_index(c)].optical_frame
                depth = image_to_depth(msg)
                ok = np.isfinite(depth)
                np.testing.assert_allclose(depth[ok], rig.depth[v][ok], rtol=1e-4, err_msg=f"{c} rig frame {k}")
                info = recorders[c].at("depth/camera_info", stamp_ns(rig.stamps[v]))
                np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), rig.cameras[rig.camera_index(c)].intrinsics)
        # TF and odometry: odom -> base_link, one per rig frame at the first camera's stamp,
        # the ground-truth base pose relative to the first rig frame's
        base0 = rig.c2w[views_of(rig, 0)["left"]] @ inv_se3(rig.cameras[0].T_base_optical)
        for k in range(21, len(rig)):
            v = views_of(rig, k)["left"]
            t = body.at("/tf", stamp_ns(rig.stamps[v]))
            assert t is not None and t.child_frame_id == rig.base_frame and t.header.frame_id == "odom"
            expected = inv_se3(base0) @ rig.c2w[v] @ inv_se3(rig.cameras[0].T_base_optical)
            np.testing.assert_allclose(transform_to_matrix(t.transform), expected, atol=1e-3)
        odom_stamps = body.stamps("odometry")
        assert len(odom_stamps) == len(set(odom_stamps)) == len(answered_frames)  # one pose per rig frame
        assert spinner.wait_for(lambda: body.by_topic.get("path") and  # on its timer (path_publish_period)
                                len(body.by_topic["path"][-1].poses) == len(answered_frames), 2.0)
        assert body.by_topic["path"][-1].poses[-1].header.frame_id == "odom"
        # the path is the world's one trajectory: poses published before the world turned
        # metric are in metres now too (read again from the world, not scaled about odom's origin)
        path = body.by_topic["path"][-1].poses
        for pose, k in zip(path, answered_frames):
            v = views_of(rig, k)["left"]
            assert stamp_to_ns(pose.header.stamp) == stamp_ns(rig.stamps[v])
            expected = inv_se3(base0) @ rig.c2w[v] @ inv_se3(rig.cameras[0].T_base_optical)
            np.testing.assert_allclose(pose_to_matrix(pose.pose), expected, atol=1e-3, err_msg=f"path, rig frame {k}")
        # per-camera outputs under <camera>/, none on the single-camera topics
        assert all(recorders[c].by_topic.get("points") for c in rig.camera_names)
        assert not body.by_topic.get("depth/image")
        diag = {kv.key: kv.value for kv in body.by_topic["/diagnostics"][-1].status[0].values}
        assert float(diag["rig_metres_per_unit"]) > 0 and diag["scale"] == "metric (metres)"

        from std_srvs.srv import Trigger

        response = node._on_save(Trigger.Request(), Trigger.Response())
        assert response.success
        saved = json.loads((tmp_path / "saved" / "rig.json").read_text())
        assert saved["scale"]["metres_per_unit"] == pytest.approx(1.0, abs=1e-6)  # metric: the residual
        assert saved["metres_per_first_window_unit"] == pytest.approx(streamer.rig.metres_per_unit)
    finally:
        spinner.shutdown()
        node.destroy_node()


def test_stereo_without_tf_static_estimates_extrinsics(ros_context, make_node, tmp_path):
    """No /tf_static: the stereo pair's extrinsics are estimated from the model's
    poses and published on TF as <optical frame>_estimated under the first camera."""
    rig = make_rig_sequence("stereo", "forward", n_frames=8, width=64, height=48, seed=8)
    node, io, cameras, recorders, body, spinner = start(ros_context, make_node, rig, OracleModel(rig), tmp_path)
    try:
        for k in range(len(rig)):
            for _ in range(10):
                send_rig_frame(rig, cameras, k)
                if spinner.wait_for(lambda: answered(recorders, rig, k), 1.0):
                    break
            assert answered(recorders, rig, k)
        left, right = rig.cameras
        estimated = [t for m in body.by_topic["/tf"] for t in m.transforms
                     if t.child_frame_id == f"{right.optical_frame}_estimated"]
        assert estimated and estimated[-1].header.frame_id == left.optical_frame
        # in the stream's unit (the first window's): the calibration times that unit
        v0 = rig.view(0, "left")
        units_per_metre = float(np.median(image_to_depth(recorders["left"].at("depth/image", stamp_ns(rig.stamps[v0])))
                                          / rig.depth[v0]))
        expected = rig.relative_extrinsics("left", "right")
        expected[:3, 3] *= units_per_metre
        np.testing.assert_allclose(transform_to_matrix(estimated[-1].transform), expected, atol=1e-5)
        assert not node.pipeline.streamer.metric  # no calibrated baseline: no metric scale
        assert stamp_to_ns(estimated[-1].header.stamp) in {stamp_ns(s) for s in rig.stamps}
    finally:
        spinner.shutdown()
        node.destroy_node()
