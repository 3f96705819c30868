"""da3_node as users start it: its own process, a real (random-weight) DA3 network,
a best-effort camera publisher, every output checked, services called."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from std_srvs.srv import Trigger

from da3_ros.ros.conversions import cloud_to_points, image_to_depth
from da3_ros.synthetic.sequence import make_sequence
from node_harness import OPTICAL_FRAME, OUTPUT_TYPES, Camera, Recorder, Spinner, stamp_ns

WIDTH, HEIGHT = 64, 48


def test_node_process_with_random_da3(tmp_path, make_node, ros_context, child_process):
    if shutil.which("da3_node") is None:
        pytest.skip("da3_node is not on PATH: run `make setup` and `. ./env.sh`")
    seq = make_sequence("forward", n_frames=12, width=WIDTH, height=HEIGHT, seed=1)
    save_dir = tmp_path / "saved"
    node_proc = child_process([shutil.which("da3_node"), "--ros-args",
                               "-p", "model:=random:da3-small", "-p", "device:=cpu", "-p", "precision:=fp32",
                               "-p", "process_res:=70", "-p", "window_size:=3", "-p", "diagnostics_period:=0.2",
                               "-p", "map_publish_period:=0.2", "-p", "min_confidence:=0.0",
                               # random weights: any depth scale is as good as another
                               "-p", "min_depth:=0.0", "-p", "max_depth:=1000.0",
                               "-p", f"warmup_width:={WIDTH}", "-p", f"warmup_height:={HEIGHT}",
                               "-p", f"save_directory:={save_dir}"])
    assert node_proc.wait_for_line("model ready", timeout=120), f"node did not start:\n{node_proc.output()}"
    assert node_proc.wait_for_line(f"warmed up for {WIDTH}x{HEIGHT}", timeout=120), node_proc.output()

    io_node = make_node("test_camera_and_recorder")
    camera, recorder = Camera(io_node), Recorder(io_node)
    spinner = Spinner(ros_context, io_node)
    try:
        assert spinner.wait_for(lambda: io_node.count_subscribers("image") > 0, 20.0), "node never subscribed"
        sent = []
        for i in range(len(seq)):  # no CameraInfo: intrinsics must be estimated and published
            sent.append(camera.publish_rgb(seq.images[i], seq.stamps[i]))
            spinner.wait_for(lambda: sent[-1] in recorder.stamps("depth/image"), 5.0)
        wanted = [t for t in OUTPUT_TYPES] + ["map/points"]
        ok = spinner.wait_for(lambda: all(recorder.by_topic.get(t) for t in wanted), 30.0)
        missing = [t for t in wanted if not recorder.by_topic.get(t)]
        assert ok, f"no message on {missing}\n{node_proc.output()}"

        depth = recorder.by_topic["depth/image"][-1]
        assert depth.encoding == "32FC1" and (depth.width, depth.height) == (WIDTH, HEIGHT)
        assert depth.header.frame_id == OPTICAL_FRAME
        values = image_to_depth(depth)
        assert np.isfinite(values).any(), "depth is all NaN"
        conf = recorder.by_topic["depth/confidence"][-1]
        assert conf.encoding == "32FC1" and (conf.width, conf.height) == (WIDTH, HEIGHT)
        for topic in ("depth/camera_info", "camera_info/estimated"):
            info = recorder.by_topic[topic][-1]
            assert (info.width, info.height) == (WIDTH, HEIGHT) and info.header.frame_id == OPTICAL_FRAME
            K = np.asarray(info.k).reshape(3, 3)
            assert K[0, 0] > 0 and K[1, 1] > 0 and K[2, 2] == 1
        xyz, rgb = cloud_to_points(recorder.by_topic["points"][-1])
        assert recorder.by_topic["points"][-1].header.frame_id == OPTICAL_FRAME and len(xyz) > 0
        assert recorder.by_topic["map/points"][-1].header.frame_id == "odom"
        odom = recorder.by_topic["odometry"][-1]
        assert odom.header.frame_id == "odom" and odom.child_frame_id == OPTICAL_FRAME
        assert recorder.by_topic["path"][-1].header.frame_id == "odom"
        kf = recorder.by_topic["keyframe"][0]
        assert kf.world_frame_id == "odom" and kf.depth.width == WIDTH and kf.image.encoding == "rgb8"
        assert (kf.camera_info.width, kf.camera_info.height) == (WIDTH, HEIGHT)
        status = recorder.by_topic["/diagnostics"][-1].status[0]
        values = {kv.key: kv.value for kv in status.values}
        assert "da3-small" in values["model"] and int(values["frames_answered"]) > 0
        for topic in ("depth/image", "odometry", "/tf", "points"):  # stamps are the inputs'
            assert set(recorder.stamps(topic)) <= set(sent), topic

        for service, check in (("/da3_node/save", "map.ply"), ("/da3_node/reset", None)):
            client = io_node.create_client(Trigger, service)
            assert client.wait_for_service(timeout_sec=10.0), f"{service} not offered"
            future = client.call_async(Trigger.Request())
            assert spinner.wait_for(future.done, 30.0), f"{service} did not answer"
            assert future.result().success, future.result().message
            if check:
                assert (save_dir / "map.ply").stat().st_size > 0 and (save_dir / "trajectory.tum").exists()
                assert len((save_dir / "trajectory.tum").read_text().splitlines()) >= 1
    finally:
        spinner.shutdown()
    output = node_proc.stop()
    assert "Traceback" not in output, output
