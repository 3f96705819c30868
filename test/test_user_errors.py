"""A user's mistake, through the real `da3_ros` command (a subprocess, as a user
types it): ONE line on stderr that names the bad value and what is accepted,
exit code 2, no traceback, and nothing written. One test per mistake."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

from da3_ros.synthetic.sequence import make_sequence, write_sequence


def da3_ros(args: List[str], cwd: Path, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """`da3_ros ARGS` as installed by `make setup` (on PATH after `. ./env.sh`)."""
    command = [shutil.which("da3_ros")] if shutil.which("da3_ros") else [sys.executable, "-m", "da3_ros.cli"]
    return subprocess.run(command + args, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def one_line_error(run: subprocess.CompletedProcess, *words: str) -> str:
    """The run ended as a usage error: exit 2, one line on stderr naming `words`."""
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{run.stderr}"
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory) -> Path:
    """A valid input: a synthetic sequence written as an image folder."""
    path = tmp_path_factory.mktemp("input") / "seq"
    write_sequence(make_sequence("forward", n_frames=4, width=64, height=48, seed=0), path)
    return path


@pytest.fixture(scope="module")
def rig_bag(tmp_path_factory) -> Path:
    """A stereo rig bag with its /tf_static (base_link -> each optical frame)."""
    from da3_ros.synthetic.rig import make_rig_sequence, write_rig_bag

    path = tmp_path_factory.mktemp("rig") / "rig_bag"
    write_rig_bag(make_rig_sequence("stereo", "forward", n_frames=3, width=64, height=48, seed=1), path)
    return path


def test_no_command(tmp_path):
    line = one_line_error(da3_ros([], tmp_path), "give a command", "run-offline", "bench")
    assert line.startswith("da3_ros:")


def test_unknown_command(tmp_path):
    one_line_error(da3_ros(["run-online"], tmp_path), "'run-online'", "run-offline")


def test_help_shows_no_missing_default(tmp_path):
    for command in ("run-offline", "process-bag", "bench"):
        run = da3_ros([command, "--help"], tmp_path)
        assert run.returncode == 0 and "usage:" in run.stdout, run.stderr
        assert "(default: None)" not in run.stdout and "(default: False)" not in run.stdout, command


def test_run_offline_same_camera_twice(tmp_path, rig_bag):
    one_line_error(da3_ros(["run-offline", "--input", str(rig_bag), "--out", "out", "--cameras", "left,left"], tmp_path),
                   "--cameras", "'left' twice", "left,right")
    assert not (tmp_path / "out").exists()


def test_run_offline_output_cannot_be_created(tmp_path, frames_dir):
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", "/proc/nope"], tmp_path),
                   "--out '/proc/nope'", "cannot be created", "a folder you can write to")


def test_run_offline_output_is_a_file(tmp_path, frames_dir):
    (tmp_path / "taken").write_text("x")
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", "taken"], tmp_path),
                   "--out 'taken'", "is a file")


def test_run_offline_refuses_a_non_empty_output(tmp_path, frames_dir):
    out = tmp_path / "earlier_run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", str(out)], tmp_path),
                   str(out), "not empty", "summary.json", "--overwrite")
    assert (out / "summary.json").read_text() == "{}"  # untouched
    # with --overwrite it runs (the oracle: no network needed)
    run = da3_ros(["run-offline", "--input", str(frames_dir), "--out", str(out), "--overwrite", "--quiet",
                   "--model", f"oracle:{frames_dir}", "--window", "2"], tmp_path)
    assert run.returncode == 0, run.stderr
    assert (out / "summary.json").read_text() != "{}"


def test_run_offline_process_res_out_of_range(tmp_path, frames_dir):
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", "out", "--process-res", "-5"],
                           tmp_path), "--process-res", "-5", "56 to 1512")
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", "out", "--process-res", "big"],
                           tmp_path), "--process-res", "'big'", "56 to 1512")
    assert not (tmp_path / "out").exists()


def test_run_offline_process_res_the_embedded_model_cannot_honour(tmp_path, frames_dir):
    """model default without DA3 weights is the embedded da3-tiny: it runs at 252 only,
    so another explicit --process-res is refused (it used to be replaced silently)."""
    run = da3_ros(["run-offline", "--input", str(frames_dir), "--out", "out", "--process-res", "336"], tmp_path,
                  env={"HF_HUB_CACHE": str(tmp_path / "empty_hub_cache")})  # no DA3 weights cached (hub offline)
    one_line_error(run, "process_res 336", "embedded da3-tiny", "252", "leave process_res unset")
    assert not (tmp_path / "out").exists()


def test_run_offline_process_res_does_not_apply_to_the_oracle(tmp_path, frames_dir):
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", "out", "--process-res", "336",
                            "--model", f"oracle:{frames_dir}"], tmp_path), "--process-res 336", "oracle")


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "hub does not answer"])
def test_unknown_hub_model_offline(tmp_path, frames_dir, offline):
    """Not cached, and the hub out of reach: at once (no download retries), one line
    saying where weights are looked for and how to provide them."""
    env = {"HF_HUB_OFFLINE": "1"} if offline == "HF_HUB_OFFLINE" else \
        {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}  # the discard port: nothing listens
    run = da3_ros(["run-offline", "--input", str(frames_dir), "--out", "out", "--model", "nobody/no-such-model"],
                  tmp_path, env=env)
    line = one_line_error(run, "'nobody/no-such-model'", "Hugging Face cache", "huggingface-cli download",
                          "config.json + model.safetensors")
    assert (offline in line) if offline == "HF_HUB_OFFLINE" else "does not answer" in line
    assert len(line) < 400, len(line)
    assert not (tmp_path / "out").exists()


def test_process_bag_unknown_model(tmp_path, rig_bag):
    one_line_error(da3_ros(["process-bag", str(rig_bag), "out_bag", "--image-topic", "/left/image",
                            "--model", "nobody/no-such-model"], tmp_path),
                   "'nobody/no-such-model'", "Hugging Face cache")
    assert not (tmp_path / "out_bag").exists()


def test_run_offline_base_frame_without_a_rig(tmp_path, frames_dir):
    one_line_error(da3_ros(["run-offline", "--input", str(frames_dir), "--out", "out", "--base-frame", "nope"],
                           tmp_path), "--base-frame 'nope'", "--cameras")


def test_run_offline_base_frame_not_in_the_bag(tmp_path, rig_bag):
    one_line_error(da3_ros(["run-offline", "--input", str(rig_bag), "--out", "out", "--cameras", "left,right",
                            "--base-frame", "nope"], tmp_path), "--base-frame 'nope'", "/tf_static", "base_link ->")


def test_bench_without_cuda_writes_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: `da3_ros bench` runs here")
    run = da3_ros(["bench"], tmp_path)
    one_line_error(run, "--device cuda", "no CUDA GPU", "--device cpu")
    assert run.stdout == "" and list(tmp_path.iterdir()) == []  # no bench_out/, no INFO lines


@pytest.mark.parametrize("param, words", [
    ("model:=nobody/no-such-model", ("da3_node: cannot load model 'nobody/no-such-model'", "Hugging Face cache")),
    ("process_res:=-5", ("da3_node:", "process_res", "-5", "Min: 56, Max: 1512")),
])
def test_node_start_up_error(tmp_path, param, words):
    """da3_node with a parameter it cannot honour: its ROS log, then one line saying why, exit 2."""
    if shutil.which("da3_node") is None:
        pytest.skip("da3_node is not on PATH: run `make setup` and `. ./env.sh`")
    run = subprocess.run([shutil.which("da3_node"), "--ros-args", "-p", param], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr + run.stdout, run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith("da3_node: ")]
    assert len(said) == 1 and all(word in said[0] for word in words), run.stderr


@pytest.mark.parametrize("args, words", [
    (["--variants", "nosuch"], ("--variants 'nosuch'", "no such checkpoint", "da3-large")),
    (["--variants", "da3-huge"], ("--variants 'da3-huge'", "unknown architecture", "da3-small")),
    (["--seconds", "-1"], ("--seconds -1.0", "above 0")),
    (["--size", "10x10"], ("--size '10x10'", "16x16")),
    (["--out", "/proc/nope"], ("--out '/proc/nope'", "cannot be created")),
])
def test_bench_node_refuses_before_rendering(tmp_path, args, words):
    run = da3_ros(["bench-node", *args], tmp_path)
    one_line_error(run, *words)
    assert list(tmp_path.iterdir()) == []  # nothing rendered, nothing written


@pytest.mark.parametrize("flag, value, words", [
    ("--reference-strategy", "bogus", ("--reference-strategy", "bogus", "saddle_balanced")),
    ("--size", "abc", ("--size", "abc", "WxH")),
    ("--window", "0", ("--window", "0", "2 to 64")),
    ("--model", "/nonexistent/model", ("--model", "/nonexistent/model")),
])
def test_export_onnx_bad_flag(tmp_path, flag, value, words):
    one_line_error(da3_ros(["export-onnx", flag, value, "--out", str(tmp_path / "onnx")], tmp_path), *words)
    assert not (tmp_path / "onnx").exists()
