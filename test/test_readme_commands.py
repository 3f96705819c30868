"""README.md's commands, run as written.

Every command in the README's bash blocks has a plan here (a test fails for one
that has none, so a new command gets one): run it in a folder holding the inputs
it names (a bag `run1`, a rig bag `rig_bag`, a TUM RGB-D folder ...) and expect
exit code 0; or, for a node or a launch, start it, wait until it answers
frames, stop it with Ctrl-C (SIGINT) and expect exit code 0 and no traceback;
or skip it with the reason when it needs what this machine lacks (a GPU, the
DA3-SMALL weights, the `ros2` command, a ROS workspace). No network: the test
environment sets HF_HUB_OFFLINE, so `model: default` is the embedded da3-tiny.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: seconds a node may take to load its model and answer (torch on two shared cores)
READY_TIMEOUT_S = 240.0
ACTIVE = "active: answering frames"


@dataclass(frozen=True)
class Plan:
    how: str  # "run": exit code 0 | "serve": up and answering, then Ctrl-C | "skip"
    inputs: Tuple[str, ...] = ()  # what the working folder must hold (see make_inputs); "repo": run in the repository
    needs: Tuple[str, ...] = ()  # "ros2", "da3-small" (weights cached), "cuda", "rosdep"
    ready: str = ACTIVE  # serve: the output line that says it works
    also: Tuple[str, ...] = ()  # further lines the output must hold
    why: str = ""  # skip: the reason


CAMERA = ("camera",)  # serve: a camera publishing on /camera/color/... while it runs
PLANS: Dict[str, Plan] = {
    "make setup": Plan("skip", why="CI runs it (.ci/run) before this suite; it is this suite's own set-up"),
    "make test": Plan("skip", why="CI runs it (.ci/run): it is this suite"),
    ". ./env.sh": Plan("run", inputs=("repo",)),
    "da3_node --ros-args -r image:=/camera/color/image_raw -r camera_info:=/camera/color/camera_info":
        Plan("serve", inputs=CAMERA),
    "make demo": Plan("run", inputs=("repo",), also=("[demo]",)),
    "da3_node --ros-args -r __ns:=/da3 --params-file config/live.yaml": Plan("serve", inputs=("repo",)),
    "cd ~/ros2_ws/src && git clone <this repository> da3_ros":
        Plan("skip", why="a ROS 2 workspace of the user's, with the repository's address"),
    "cd ~/ros2_ws && rosdep install --from-paths src --ignore-src -y":
        Plan("skip", needs=("rosdep",), why="a ROS 2 workspace of the user's (rosdep installs system packages)"),
    "pip install -r src/da3_ros/requirements/core.txt":
        Plan("skip", why="in the user's ROS 2 workspace (make setup installs the same file here)"),
    "colcon build --packages-select da3_ros && source install/setup.bash":
        Plan("skip", why="in the user's ROS 2 workspace (make setup runs the same colcon build here)"),
    "ros2 launch da3_ros live.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info":
        Plan("serve", inputs=CAMERA, needs=("ros2",)),
    "ros2 launch da3_ros live.launch.py managed:=true": Plan("serve", needs=("ros2",)),
    "ros2 run da3_ros da3_managed_node --ros-args -p model:=depth-anything/DA3-SMALL":
        Plan("serve", needs=("ros2", "da3-small"), ready="da3_node"),
    "ros2 lifecycle set /da3_node configure && ros2 lifecycle set /da3_node activate":
        Plan("skip", why="drives the da3_managed_node of the line above (DA3-SMALL weights); "
                         "test/launch/test_managed_launch.py drives the lifecycle the same way"),
    'ros2 launch da3_ros live.launch.py cameras:="[left, right]" base_frame:=base_link '
    'model:=depth-anything/DA3-SMALL': Plan("serve", needs=("ros2", "da3-small")),
    'ros2 run da3_ros da3_node --ros-args -r __ns:=/da3 -p cameras:="[left, front, right]" -p base_frame:=base_link '
    '-p window_size:=12 -r left/image:=/cam_left/image_raw -r left/camera_info:=/cam_left/camera_info':
        Plan("serve", needs=("ros2",), ready="model ready"),  # a rig waits for its cameras' /tf_static
    'da3_ros process-bag rig_bag out_bag -p cameras:="[left,right]" -p base_frame:=base_link':
        Plan("run", inputs=("rig_bag",), also=("answered",)),
    "da3_ros run-offline --input rig_bag --out rig_out --cameras left,right --base-frame base_link":
        Plan("run", inputs=("rig_bag",), also=("views answered",)),
    'make demo DEMO_ARGS="--rig stereo"': Plan("run", inputs=("repo",), also=("[demo]",)),
    "ros2 launch da3_ros live.launch.py image:=/camera/color/image_raw camera_info:=/camera/color/camera_info "
    "model:=depth-anything/DA3-SMALL rviz:=true": Plan("serve", inputs=CAMERA, needs=("ros2", "da3-small")),
    "ros2 launch da3_ros live.launch.py params_file:=$(ros2 pkg prefix da3_ros)/share/da3_ros/config/jetson.yaml":
        Plan("serve", needs=("ros2", "da3-small", "cuda")),
    "ros2 launch da3_ros replay.launch.py bag:=run1 image:=/camera/color/image_raw":
        Plan("serve", inputs=("run1",), needs=("ros2",),
             also=("replay player: da3_ros replay", "rviz2 is not installed here")),
    "da3_ros replay run1 --rate 0.5": Plan("run", inputs=("run1",)),
    "da3_ros process-bag run1 out_bag --model depth-anything/DA3-SMALL": Plan("run", inputs=("run1",),
                                                                             needs=("da3-small",)),
    "da3_ros run-offline --input frames/ --model depth-anything/DA3-SMALL --out result/ --gt groundtruth.txt":
        Plan("run", needs=("da3-small",), why="frames/ with groundtruth.txt"),
    "da3_ros run-offline --input rgbd_dataset_freiburg1_xyz/ --out eval_xyz/":
        Plan("run", inputs=("rgbd_dataset_freiburg1_xyz",), also=("AbsRel",)),
    "da3_ros run-offline --input chess/seq-01/ --model depth-anything/DA3-SMALL --device cuda --out eval_chess/":
        Plan("run", needs=("da3-small", "cuda")),
    "da3_ros run-offline --input run1.mcap --gt run1_groundtruth.tum --out eval_run1/":
        Plan("run", inputs=("run1.mcap",), also=("ATE",)),
    ". ./env.sh && python -m da3_ros.ros.demo --sequence forward --fps 1.5": Plan("run", inputs=("repo",),
                                                                                also=("[demo]",)),
}
#: `make demo` runs here (about 80 s on two cores; it writes demo_output/ in the repository, as a
#: user's run does); its two variants run the same entry point for as long again: DA3_TEST_DEMO=1 runs them
SLOW = {'make demo DEMO_ARGS="--rig stereo"', ". ./env.sh && python -m da3_ros.ros.demo --sequence forward --fps 1.5"}


def readme_commands() -> List[str]:
    """Each command of README.md's bash blocks: continuation lines joined, comments
    and the `make demo # or: ...` alternative split off, blank lines dropped."""
    text = (REPO / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            code, _, comment = line.partition("  #")
            if line.lstrip().startswith("#"):
                continue
            code = " ".join(code.split())
            if code:
                commands.append(code)
            alternative = comment.strip().partition("or: ")[2]
            if alternative:
                commands.append(" ".join(alternative.split()))
    return commands


def test_every_readme_command_has_a_plan():
    commands = readme_commands()
    assert len(commands) >= 20, commands
    missing = [c for c in commands if c not in PLANS]
    assert not missing, "README commands without a plan in this test:\n" + "\n".join(missing)
    stale = [c for c in PLANS if c not in commands]
    assert not stale, "plans for commands the README no longer has:\n" + "\n".join(stale)


def unmet(needs: Tuple[str, ...]) -> str:
    for need in needs:
        if need in ("ros2", "rosdep") and shutil.which(need) is None:
            return (f"no `{need}` command here (make setup installs no ROS 2 command line: see README, "
                    "\"What make setup gives you\")")
        if need == "da3-small":
            from da3_ros.weights import HUB_DEFAULT, hub_cached

            if not hub_cached(HUB_DEFAULT):
                return f"needs the {HUB_DEFAULT} weights in the Hugging Face cache (none here; tests download nothing)"
        if need == "cuda":
            torch = pytest.importorskip("torch")
            if not torch.cuda.is_available():
                return "needs a CUDA GPU"
    return ""


def make_inputs(names: Tuple[str, ...], work: Path) -> None:
    """The files a command names, small and synthetic."""
    from da3_ros.io import bags, writers
    from da3_ros.synthetic.sequence import make_sequence

    seq = make_sequence("forward", n_frames=6, width=64, height=48, seed=11)
    for name in names:
        if name in ("run1", "run1.mcap"):  # a camera bag, as recorded from a RealSense-like driver
            ts, frame = bags.get_typestore(), "camera_color_optical_frame"
            with bags.open_writer(work / name, storage="mcap") as w:
                img = bags.add_topic(w, "/camera/color/image_raw", bags.IMAGE, ts)
                info = bags.add_topic(w, "/camera/color/camera_info", bags.CAMERA_INFO, ts)
                for rgb, t in zip(seq.images, seq.stamps):
                    ns = int(round(float(t) * 1e9))
                    w.write(info, ns, bags.serialize(ts, bags.camera_info_msg(ts, seq.intrinsics, seq.width,
                                                                              seq.height, float(t), frame)))
                    w.write(img, ns + 1, bags.serialize(ts, bags.image_msg(ts, rgb, "rgb8", float(t), frame)))
            if name == "run1.mcap":
                writers.write_tum(work / "run1_groundtruth.tum", np.asarray(seq.stamps), np.asarray(seq.c2w))
        elif name == "rig_bag":
            from da3_ros.synthetic.rig import make_rig_sequence, write_rig_bag

            write_rig_bag(make_rig_sequence("stereo", "forward", n_frames=4, width=64, height=48, seed=12),
                          work / "rig_bag")
        elif name == "rgbd_dataset_freiburg1_xyz":
            from dataset_layouts import write_tum_rgbd

            write_tum_rgbd(seq, work, name=name)


class Output:
    """A child's stdout and stderr, merged, collected by a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: List[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.1)
        return False

    @property
    def text(self) -> str:
        self._thread.join(timeout=5.0)
        return "".join(self.lines)


def publish_camera(stop: threading.Event, answers: List[int]) -> None:
    """A driver on /camera/color/image_raw and camera_info at 5 Hz (what the `serve` plans
    remap), and the node's depth images counted in `answers` (no namespace, or /da3)."""
    import rclpy
    import rclpy.executors
    from rclpy.context import Context

    from da3_ros.ros.conversions import array_to_image, intrinsics_to_camera_info, ns_to_stamp
    from da3_ros.synthetic.sequence import make_sequence
    from sensor_msgs.msg import CameraInfo, Image
    from std_msgs.msg import Header

    seq = make_sequence("forward", n_frames=40, width=64, height=48, seed=13)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("readme_camera", context=context)
    image = node.create_publisher(Image, "/camera/color/image_raw", 5)
    info = node.create_publisher(CameraInfo, "/camera/color/camera_info", 5)
    for topic in ("/depth/image", "/da3/depth/image"):
        node.create_subscription(Image, topic, lambda m: answers.append(1), 10)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        k = 0
        while not stop.is_set():
            i = k % len(seq)
            header = Header(stamp=ns_to_stamp(int((1000.0 + 0.2 * k) * 1e9)), frame_id="camera_color_optical_frame")
            info.publish(intrinsics_to_camera_info(seq.intrinsics, seq.width, seq.height, header))
            image.publish(array_to_image(np.ascontiguousarray(seq.images[i]), "rgb8", header))
            k += 1
            executor.spin_once(timeout_sec=0.2)
    finally:
        node.destroy_node()
        context.try_shutdown()


@pytest.mark.parametrize("command", list(PLANS), ids=[" ".join(c.split()[:4])[:60] + f" #{i}" for i, c in enumerate(PLANS)])
def test_readme_command_as_written(command, tmp_path):
    plan = PLANS[command]
    if plan.how == "skip":
        pytest.skip(plan.why)
    reason = unmet(plan.needs)
    if reason:
        pytest.skip(reason)
    if command in SLOW and os.environ.get("DA3_TEST_DEMO") != "1":
        pytest.skip("the demo takes minutes on a CPU and writes demo_output/ in the repository: "
                    "DA3_TEST_DEMO=1 runs it here")
    if plan.why and not plan.inputs:
        pytest.skip(f"needs the user's data ({plan.why})")
    cwd = REPO if "repo" in plan.inputs else tmp_path
    make_inputs(tuple(i for i in plan.inputs if i not in ("repo", "camera")), tmp_path)
    if plan.how == "run":
        run = subprocess.run(["bash", "-c", command], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=900)
        assert run.returncode == 0, f"{command}\n{run.stdout[-4000:]}"
        assert "Traceback" not in run.stdout, run.stdout[-4000:]
        for text in plan.also:
            assert text in run.stdout, (text, run.stdout[-4000:])
        return
    # serve: up and answering, then Ctrl-C as a user stops it
    stop, answers = threading.Event(), []
    camera = threading.Thread(target=publish_camera, args=(stop, answers), daemon=True) \
        if "camera" in plan.inputs else None
    proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = Output(proc)
    try:
        if camera is not None:
            camera.start()
        assert out.wait_for(plan.ready, READY_TIMEOUT_S), \
            f"{command}: no {plan.ready!r} within {READY_TIMEOUT_S} s\n{''.join(out.lines)[-4000:]}"
        if camera is not None:  # it answers the camera: depth images come back
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not answers and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.2)
            assert answers, f"{command}: no depth image answered\n{''.join(out.lines)[-4000:]}"
    finally:
        stop.set()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        if camera is not None and camera.is_alive():
            camera.join(timeout=10)
    text = out.text
    assert code == 0, f"{command}: exit code {code} after Ctrl-C\n{text[-4000:]}"
    assert "Traceback" not in text, text[-4000:]
    for line in plan.also:
        assert line in text, (line, text[-4000:])
