"""da3_node in-process with the exact oracle model, fed a synthetic sequence over DDS.

What comes out must be the ground truth: poses (after the world-frame offset)
within 1 mm, depth equal to the rendered depth, CameraInfo matching the depth
image, every stamp equal to its input's; and bad input never stops the node.
"""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter

from da3_ros.geometry.transforms import T_BODY_OPTICAL, inv_se3
from da3_ros.ros.conversions import (array_to_image, image_to_depth, intrinsics_to_camera_info, pose_to_matrix,
                                     stamp_to_ns, transform_to_matrix)
from da3_ros.synthetic.oracle import OracleModel
from da3_ros.synthetic.sequence import make_sequence
from node_harness import OPTICAL_FRAME, feed, header, publish_info, stamp_ns

N_FRAMES = 20


@pytest.fixture(scope="module")
def sequence():
    return make_sequence("orbit", n_frames=N_FRAMES, width=64, height=48, seed=3)


def test_outputs_equal_ground_truth(rig, sequence):
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True))
    K = sequence.intrinsics
    # CameraInfo and image travel on separate topics: make sure the first image
    # is not processed before any CameraInfo arrived (else it is, rightly, estimated)
    camera.info_pub.publish(intrinsics_to_camera_info(K, sequence.width, sequence.height, header(sequence.stamps[0])))
    assert spinner.wait_for(lambda: node.pipeline.camera_info is not None, 5.0)
    for i in range(N_FRAMES):
        assert feed(camera, recorder, spinner, sequence.images[i], sequence.stamps[i], K), f"frame {i} unanswered"
    assert spinner.wait_for(lambda: len(recorder.stamps("/tf")) >= N_FRAMES and recorder.by_topic["map/points"]
                            and len(recorder.stamps("depth/camera_info")) >= N_FRAMES, 5.0)

    first = stamp_ns(sequence.stamps[0])
    T_world_stream_gt = T_BODY_OPTICAL @ inv_se3(sequence.c2w[0])  # the node's odom = first camera's body frame
    for i in range(N_FRAMES):
        ns = stamp_ns(sequence.stamps[i])
        expected = T_world_stream_gt @ sequence.c2w[i]
        odom = recorder.at("odometry", ns)
        tf = recorder.at("/tf", ns)
        assert odom is not None and tf is not None, f"frame {i}: no odometry or TF"
        assert odom.header.frame_id == "odom" and odom.child_frame_id == OPTICAL_FRAME
        assert tf.header.frame_id == "odom" and tf.child_frame_id == OPTICAL_FRAME
        for name, T in (("odometry", pose_to_matrix(odom.pose.pose)), ("tf", transform_to_matrix(tf.transform))):
            err_mm = 1e3 * np.linalg.norm(T[:3, 3] - expected[:3, 3])
            rot_err = np.abs(T[:3, :3] - expected[:3, :3]).max()
            assert err_mm < 1.0 and rot_err < 1e-5, f"frame {i} {name}: {err_mm:.3f} mm, rotation {rot_err:.2e}"

        depth_msg = recorder.at("depth/image", ns)
        info = recorder.at("depth/camera_info", ns)
        assert depth_msg.encoding == "32FC1" and depth_msg.header.frame_id == OPTICAL_FRAME
        assert (depth_msg.width, depth_msg.height) == (sequence.width, sequence.height)
        assert (info.width, info.height) == (depth_msg.width, depth_msg.height)
        assert info.header.frame_id == depth_msg.header.frame_id
        np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), K, atol=1e-9)
        depth = image_to_depth(depth_msg)
        gt = sequence.depth[i]
        valid = np.isfinite(depth)
        assert valid.mean() > 0.95, f"frame {i}: only {valid.mean():.0%} valid depth"
        np.testing.assert_allclose(depth[valid], gt[valid], rtol=1e-5, err_msg=f"frame {i} depth")

    # every output carries its source image's stamp
    inputs = {stamp_ns(s) for s in sequence.stamps}
    for topic in ("depth/image", "depth/camera_info", "depth/confidence", "points", "odometry", "/tf", "keyframe"):
        stamps = recorder.stamps(topic)
        assert stamps, f"nothing on {topic}"
        assert set(stamps) <= inputs, f"{topic} carries stamps that no input had"
    assert recorder.stamps("keyframe")[0] == first  # the first frame is a keyframe
    assert not recorder.by_topic.get("camera_info/estimated"), "CameraInfo was given: nothing is estimated"
    # the path: on its timer (path_publish_period), every pose, stamped with the newest
    assert spinner.wait_for(lambda: recorder.by_topic.get("path") and
                            len(recorder.by_topic["path"][-1].poses) == N_FRAMES, 3.0)
    path = recorder.by_topic["path"][-1]
    assert path.header.frame_id == "odom" and stamp_to_ns(path.header.stamp) == stamp_ns(sequence.stamps[-1])
    assert [stamp_to_ns(p.header.stamp) for p in path.poses] == [stamp_ns(s) for s in sequence.stamps]
    assert recorder.by_topic["map/points"][-1].width > 0


def test_bad_input_is_survived(rig, sequence):
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True))
    img, K = sequence.images, sequence.intrinsics
    t = sequence.stamps
    assert feed(camera, recorder, spinner, img[0], t[0], K)

    def good_after(bad_msg, i):
        """Publish something bad until the node has seen it (best effort may drop
        it, and a newer frame would replace it in the one-slot buffer), then
        frame i, which must be answered."""
        seen = node.stats.bad_inputs
        for _ in range(20):
            camera.publish(bad_msg)
            if spinner.wait_for(lambda: node.stats.bad_inputs > seen, 0.25):
                break
        assert node.stats.bad_inputs > seen, f"bad input before frame {i} was never reported"
        assert feed(camera, recorder, spinner, img[i], t[i], K), f"frame {i} after bad input unanswered"

    def raw(i, **fields):
        msg = array_to_image(np.ascontiguousarray(img[i]), "rgb8", header(t[i]))
        for k, v in fields.items():
            setattr(msg, k, v)
        return msg

    good_after(raw(1, encoding="yuv422_wrong"), 2)
    good_after(raw(3, data=bytes(img[3].tobytes()[:100])), 4)        # truncated
    good_after(raw(5, width=0, height=0, step=0, data=b""), 6)       # zero size
    good_after(raw(7, step=10), 8)                                   # step smaller than a row

    # CameraInfo with zeros, NaN, another aspect ratio: ignored (estimated intrinsics instead)
    for i, bad_K in ((9, np.zeros((3, 3))), (10, np.full((3, 3), np.nan))):
        ns = stamp_ns(t[i])
        assert feed(camera, recorder, spinner, img[i], t[i], bad_K)
        assert spinner.wait_for(lambda: ns in recorder.stamps("camera_info/estimated"), 5.0), \
            "no camera_info/estimated while the given CameraInfo was unusable"
    wrong_size = intrinsics_to_camera_info(K, 640, 360, header(t[11]))  # 16:9 for 4:3 images
    publish_info(camera, spinner, node, wrong_size)
    assert feed(camera, recorder, spinner, img[11], t[11])
    # published after odometry (what feed waits for): it may still be on its way
    assert spinner.wait_for(lambda: stamp_ns(t[11]) in recorder.stamps("camera_info/estimated"), 5.0)



def test_camera_info_binning_and_roi(rig, sequence):
    """A CameraInfo calibrated at full sensor resolution describes binned and cropped
    images through binning and ROI (REP 104): the node must use exactly the
    sequence's K (it publishes it on depth/camera_info); raw images take K, not P."""
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True))
    img, K, t = sequence.images, sequence.intrinsics, sequence.stamps
    w, h = sequence.width, sequence.height

    binned = intrinsics_to_camera_info(np.diag([2.0, 2.0, 1.0]) @ K, 2 * w, 2 * h, header(t[0]))
    binned.binning_x = binned.binning_y = 2
    np.testing.assert_allclose(used_K(node, camera, recorder, spinner, img[0], t[0], binned), K, atol=1e-9)

    K_full = K.copy()
    K_full[:2, 2] += (40, 30)  # the image is the window at (40, 30) of a larger sensor
    cropped = intrinsics_to_camera_info(K_full, w + 100, h + 80, header(t[1]))
    cropped.roi.x_offset, cropped.roi.y_offset, cropped.roi.width, cropped.roi.height = 40, 30, w, h
    np.testing.assert_allclose(used_K(node, camera, recorder, spinner, img[1], t[1], cropped), K, atol=1e-9)

    # raw images: K, even where P differs
    raw_K, rect = rectified_info(K, w, h, t[2])
    np.testing.assert_allclose(used_K(node, camera, recorder, spinner, img[2], t[2], rect), raw_K, atol=1e-9)


def test_rectified_input_takes_p(rig, sequence):
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True), input_rectified=True)
    K, w, h, t = sequence.intrinsics, sequence.width, sequence.height, sequence.stamps
    _, rect = rectified_info(K, w, h, t[0])
    np.testing.assert_allclose(used_K(node, camera, recorder, spinner, sequence.images[0], t[0], rect), K, atol=1e-9)


def rectified_info(K, w, h, seconds):
    """(raw K, CameraInfo) of a camera whose raw K differs from its rectified P = [K | 0]."""
    raw_K = K.copy()
    raw_K[0, 0] *= 1.1
    info = intrinsics_to_camera_info(raw_K, w, h, header(seconds))
    P = np.zeros((3, 4))
    P[:, :3] = K
    info.p = P.ravel().tolist()
    return raw_K, info


def used_K(node, camera, recorder, spinner, rgb, seconds, info) -> np.ndarray:
    """The K the node used for a frame sent after `info` (published on depth/camera_info)."""
    publish_info(camera, spinner, node, info)
    assert feed(camera, recorder, spinner, rgb, seconds), f"frame at {seconds} s unanswered"
    ns = stamp_ns(seconds)
    assert ns not in recorder.stamps("camera_info/estimated"), "the CameraInfo was not used"
    return np.asarray(recorder.at("depth/camera_info", ns).k).reshape(3, 3)


def test_corrupt_jpeg_then_good_jpeg(rig, sequence):
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True), compressed=True)
    from sensor_msgs.msg import CompressedImage

    corrupt = CompressedImage(header=header(sequence.stamps[0]), format="jpeg", data=b"\xff\xd8\xff\xe0 not a jpeg")
    for _ in range(20):
        camera.publish(corrupt)
        if spinner.wait_for(lambda: node.stats.bad_inputs > 0, 0.25):
            break
    assert node.stats.bad_inputs > 0, "the corrupt JPEG was never reported"
    assert feed(camera, recorder, spinner, sequence.images[1], sequence.stamps[1], sequence.intrinsics, fmt="png")
    depth = image_to_depth(recorder.at("depth/image", stamp_ns(sequence.stamps[1])))
    valid = np.isfinite(depth)
    np.testing.assert_allclose(depth[valid], sequence.depth[1][valid], rtol=1e-5)  # PNG is lossless


def test_output_parameters_change_at_run_time(rig, sequence):
    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True))
    cut = float(np.median(sequence.depth[0]))  # metres: about half the pixels lie beyond
    results = node.set_parameters([Parameter("publish_points", value=False), Parameter("max_depth", value=cut)])
    assert all(r.successful for r in results)
    assert feed(camera, recorder, spinner, sequence.images[0], sequence.stamps[0], sequence.intrinsics)
    assert not recorder.by_topic.get("points"), "points published after publish_points:=false"
    depth = image_to_depth(recorder.by_topic["depth/image"][-1])
    assert np.nanmax(depth) <= cut and np.isnan(depth[sequence.depth[0] > cut]).all()
    # read-only parameters (the model, the window) refuse changes
    assert not node.set_parameters([Parameter("window_size", value=6)])[0].successful
    # values that do not fit together are refused with the reason, and nothing changes
    refused = node.set_parameters_atomically([Parameter("min_depth", value=cut + 1.0)])
    assert not refused.successful and "max_depth" in refused.reason
    # thresholds reach the streaming core (keyframes, map) from the next frame on
    assert node.set_parameters([Parameter("keyframe_depth_ratio", value=0.0),
                                Parameter("min_confidence", value=2.0)])[0].successful
    assert feed(camera, recorder, spinner, sequence.images[1], sequence.stamps[1], sequence.intrinsics)
    config = node.pipeline.streamer.config
    assert config.keyframe_depth_ratio == 0 and config.min_confidence == 2.0
    assert config.depth_range == (0.01, cut)


def test_base_frame_pose_through_tf_static(rig, sequence, make_node):
    """With base_frame set, TF and odometry are world -> base_link, composed with the
    fixed base_link -> optical transform the robot publishes on /tf_static."""
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from da3_ros.ros.conversions import matrix_to_transform

    T_base_optical = T_BODY_OPTICAL.copy()  # camera looking forward from the base ...
    T_base_optical[:3, 3] = [0.2, -0.05, 0.6]  # ... mounted 0.6 m up, 0.2 m forward
    tf_node = make_node("test_static_tf")
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    static = TransformStamped(child_frame_id=OPTICAL_FRAME, transform=matrix_to_transform(T_base_optical))
    static.header.frame_id = "base_link"
    tf_node.create_publisher(TFMessage, "/tf_static", latched).publish(TFMessage(transforms=[static]))

    node, camera, recorder, spinner = rig(OracleModel(sequence, metric=True), base_frame="base_link")
    assert spinner.wait_for(lambda: node.static_tf.lookup("base_link", OPTICAL_FRAME) is not None, 10.0)
    for i in range(4):
        assert feed(camera, recorder, spinner, sequence.images[i], sequence.stamps[i], sequence.intrinsics)
    # /tf and keyframe travel on their own topics: feed() waited for depth and odometry only
    stamps = [stamp_ns(t) for t in sequence.stamps[:4]]
    assert spinner.wait_for(lambda: set(stamps) <= set(recorder.stamps("/tf")) and recorder.by_topic["keyframe"], 5.0)
    T_world_stream = T_base_optical @ inv_se3(sequence.c2w[0])  # odom = the base at start
    for i in range(4):
        ns = stamp_ns(sequence.stamps[i])
        expected = T_world_stream @ sequence.c2w[i] @ inv_se3(T_base_optical)
        odom = recorder.at("odometry", ns)
        tf = recorder.at("/tf", ns)
        assert odom.child_frame_id == "base_link" and tf.child_frame_id == "base_link"
        for T in (pose_to_matrix(odom.pose.pose), transform_to_matrix(tf.transform)):
            assert np.linalg.norm(T[:3, 3] - expected[:3, 3]) < 1e-3 and np.abs(T[:3, :3] - expected[:3, :3]).max() < 1e-5
    # the keyframe's pose stays the optical frame's (what a SLAM back-end inserts)
    kf = recorder.by_topic["keyframe"][0]
    np.testing.assert_allclose(pose_to_matrix(kf.pose.pose)[:3, 3], (T_world_stream @ sequence.c2w[0])[:3, 3], atol=1e-6)


def test_external_odometry_conditions_poses_and_keeps_its_frame(rig, sequence, make_node):
    """Pose-conditioned mode: wheel/VIO odometry of the base in its own world; the
    node's poses are that odometry's (its frame, its metres), not re-anchored."""
    from nav_msgs.msg import Odometry

    from da3_ros.ros.conversions import matrix_to_pose

    odom_node = make_node("test_wheel_odometry")
    odom_pub = odom_node.create_publisher(Odometry, "wheel/odom", 50)
    node, camera, recorder, spinner = rig(OracleModel(sequence), external_odometry_topic="wheel/odom",
                                          publish_tf=False)
    assert spinner.wait_for(lambda: odom_node.count_subscribers("wheel/odom") > 0, 10.0)
    T_optical_base = inv_se3(T_BODY_OPTICAL)  # no base_frame: the camera's body frame is the base
    for i in range(6):
        msg = Odometry(header=header(sequence.stamps[i]), child_frame_id="base_link")
        msg.header.frame_id = "odom"
        msg.pose.pose = matrix_to_pose(sequence.c2w[i] @ T_optical_base)
        for _ in range(20):  # the odometry must be there before its image
            odom_pub.publish(msg)
            if spinner.wait_for(lambda: node.pipeline.odometry.nearest(sequence.stamps[i], 1e-6) is not None, 0.1):
                break
        assert feed(camera, recorder, spinner, sequence.images[i], sequence.stamps[i], sequence.intrinsics)
    for i in range(6):
        odom = recorder.at("odometry", stamp_ns(sequence.stamps[i]))
        T = pose_to_matrix(odom.pose.pose)
        assert np.linalg.norm(T[:3, 3] - sequence.c2w[i][:3, 3]) < 1e-3, f"frame {i}"
        assert np.abs(T[:3, :3] - sequence.c2w[i][:3, :3]).max() < 1e-5
    assert not recorder.by_topic.get("/tf"), "publish_tf:=false still published TF"
    depth = image_to_depth(recorder.at("depth/image", stamp_ns(sequence.stamps[5])))
    valid = np.isfinite(depth)
    np.testing.assert_allclose(depth[valid], sequence.depth[5][valid], rtol=1e-4)  # metres from the odometry


def test_outputs_nobody_subscribes_to_are_not_built(ros_context, make_node, sequence):
    """depth_image_proc's habit: with only odometry subscribed, no depth image,
    point cloud or keyframe is built and nothing enters the map; a subscriber to
    map/points turns the map on from then."""
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import PointCloud2

    from node_harness import Camera, Spinner, start_node

    node = start_node(ros_context, OracleModel(sequence, metric=True))
    io_node = make_node("test_lazy")
    camera = Camera(io_node)
    odometry = []
    io_node.create_subscription(Odometry, "odometry", odometry.append, 10)
    built = []
    messages = node.pipeline.builder.messages  # what the node's output thread builds from
    node.pipeline.builder.messages = lambda result, wanted: (built.append(set(wanted)), messages(result, wanted))[1]
    spinner = Spinner(ros_context, node, io_node)
    try:
        assert spinner.wait_for(lambda: node.count_subscribers("odometry") > 0
                                and io_node.count_subscribers("image") > 0, 10.0)

        def answer(i):
            for _ in range(20):
                camera.publish_rgb(sequence.images[i], sequence.stamps[i], sequence.intrinsics)
                if spinner.wait_for(lambda: any(m.header.stamp == header(sequence.stamps[i]).stamp for m in odometry),
                                    0.5):
                    return
            raise AssertionError(f"frame {i} unanswered")

        for i in range(4):
            answer(i)
        assert built and all(w == {"odometry", "tf"} for w in built), built  # /tf is always published
        assert node.pipeline.streamer.map_size == 0
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        maps = []
        io_node.create_subscription(PointCloud2, "map/points", maps.append, latched)
        assert spinner.wait_for(lambda: node.count_subscribers("map/points") > 0, 10.0)
        for i in range(4, 8):
            answer(i)
        assert "map" in built[-1] and node.pipeline.streamer.map_size > 0
        assert spinner.wait_for(lambda: maps and maps[-1].width > 0, 5.0)
    finally:
        spinner.shutdown()
        node.destroy_node()
