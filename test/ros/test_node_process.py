"""da3_node as users start it: its own process, a real (random-weight) DA3 network,
a best-effort camera publisher, every output checked, services called."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from std_srvs.srv import Trigger

from da3_ros.ros.conversions import cloud_to_points, image_to_depth
from da3_ros.synthetic.sequence import make_sequence
from node_harness import OPTICAL_FRAME, OUTPUT_TYPES, Camera, Recorder, Spinner

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


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_stop_with_frames_in_flight_is_clean(sig, tmp_path, make_node, ros_context, child_process):
    """Ctrl-C (or a supervisor's SIGTERM) while the network is busy: ~/save works up to
    then, the frame in flight finishes, the node exits 0, and its log has no traceback
    (before: 'Failed to publish: publisher's context is invalid')."""
    import signal
    import threading

    if shutil.which("da3_node") is None:
        pytest.skip("da3_node is not on PATH: run `make setup` and `. ./env.sh`")
    seq = make_sequence("orbit", n_frames=40, width=160, height=120, seed=2)
    save_dir = tmp_path / "saved"
    # process_res 252 on a CPU: each frame keeps the network busy for a good fraction of a second
    node_proc = child_process([shutil.which("da3_node"), "--ros-args", "-p", "model:=random:da3-small",
                               "-p", "device:=cpu", "-p", "process_res:=252", "-p", "window_size:=4",
                               "-p", "min_confidence:=0.0", "-p", "min_depth:=0.0", "-p", "max_depth:=1000.0",
                               "-p", f"save_directory:={save_dir}"])
    assert node_proc.wait_for_line("model ready", timeout=120), f"node did not start:\n{node_proc.output()}"
    io_node = make_node("test_camera_and_recorder")
    camera, recorder = Camera(io_node), Recorder(io_node)
    spinner = Spinner(ros_context, io_node)
    stop_camera = threading.Event()

    def stream():  # a 20 Hz camera, as a driver would keep publishing
        i = 0
        while not stop_camera.is_set():
            camera.publish_rgb(seq.images[i % len(seq)], seq.stamps[0] + 0.05 * i)
            i += 1
            stop_camera.wait(0.05)

    camera_thread = threading.Thread(target=stream, daemon=True)
    try:
        assert spinner.wait_for(lambda: io_node.count_subscribers("image") > 0, 20.0), "node never subscribed"
        camera_thread.start()
        assert spinner.wait_for(lambda: len(recorder.by_topic.get("odometry", [])) >= 2, 60.0), node_proc.output()
        client = io_node.create_client(Trigger, "/da3_node/save")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(Trigger.Request())
        assert spinner.wait_for(future.done, 30.0) and future.result().success, node_proc.output()
        assert (save_dir / "trajectory.tum").read_text().strip()
        answered = len(recorder.by_topic["odometry"])
        node_proc.proc.send_signal(getattr(signal, sig))  # the camera is still streaming: a frame is in flight
        node_proc.proc.wait(timeout=30)
    finally:
        stop_camera.set()
        camera_thread.join(timeout=5)
        spinner.shutdown()
    output = node_proc.stop()  # collects the rest of the output (the process has exited)
    assert node_proc.proc.returncode == 0, f"exit code {node_proc.proc.returncode}\n{output}"
    for bad in ("Traceback", "Failed to publish", "context is invalid", "frame failed"):
        assert bad not in output, f"{bad!r} in the node's log after {sig}:\n{output}"
    assert answered >= 2
