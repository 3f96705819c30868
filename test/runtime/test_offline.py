"""`da3_ros run-offline` end to end on a synthetic image folder with the oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from da3_ros.io.writers import read_depth_png_mm, read_ply, read_tum
from da3_ros.runtime import offline
from da3_ros.synthetic import write_sequence


@pytest.fixture(scope="module")
def seq_dir(tmp_path_factory, sequence_cache):
    seq = sequence_cache("orbit", n_frames=40, width=96, height=72)
    return seq, write_sequence(seq, tmp_path_factory.mktemp("seq") / "orbit")


def test_offline_oracle_with_ground_truth(seq_dir, tmp_path, capsys):
    seq, d = seq_dir
    out = tmp_path / "run"
    rc = offline.main(["--input", str(d), "--model", f"oracle:{d}", "--out", str(out), "--gt", str(d / "groundtruth.txt"),
                       "--window-size", "6", "--stride", "2"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "ATE" in printed.out and "40/40" in printed.err  # summary on stdout, progress on stderr
    for i in (0, 17, 39):
        assert (out / "depth" / f"{i:06d}.png").is_file() and (out / "depth" / f"{i:06d}.npy").is_file()
        assert (out / "confidence" / f"{i:06d}.npy").is_file()
    summary = json.loads((out / "summary.json").read_text())
    ev = summary["evaluation"]
    assert summary["frames_answered"] == 40 and ev["pose"]["frames"] == 40
    assert ev["pose"]["ate_rmse_m"] < 1e-4 and ev["pose"]["rpe_trans_rmse_m"] < 1e-4
    # the folder's depth/ (millimetre PNGs) is evaluated too: only the millimetre rounding is left
    assert ev["depth"]["frames"] == 40 and ev["depth"]["abs_rel"] < 1e-3
    stamps, c2w = read_tum(out / "trajectory.tum")
    np.testing.assert_allclose(stamps, seq.stamps, atol=1e-6)
    np.testing.assert_allclose(c2w[0], np.eye(4), atol=1e-6)
    xyz, rgb = read_ply(out / "map.ply")
    assert len(xyz) == summary["map_points"] > 100 and rgb is not None
    K = json.loads((out / "intrinsics.json").read_text())
    assert K["source"] == "camera_info" and K["width"] == 96
    # relative depth: the world unit is the first window's, the .npy and the pose agree on it
    scale = ev["pose"]["scale_to_gt"]
    np.testing.assert_allclose(np.load(out / "depth" / "000017.npy") * scale, seq.depth[17], rtol=1e-5)


def test_offline_metric_oracle_estimated_intrinsics(seq_dir, tmp_path):
    seq, d = seq_dir
    out = tmp_path / "run"
    rc = offline.main(["--input", str(d), "--model", f"oracle-metric:{d}", "--out", str(out), "--use-camera-info", "false",
                       "--max-frames", "12", "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] and summary["frames_in"] == 12 and summary["frames_answered"] == 12
    np.testing.assert_allclose(read_depth_png_mm(out / "depth" / "000005.png"), seq.depth[5], atol=6e-4)
    K = json.loads((out / "intrinsics.json").read_text())
    assert K["source"] == "estimated"
    np.testing.assert_allclose(np.array(K["K"]), seq.intrinsics, rtol=1e-9)


def test_offline_reports_bad_input_and_model(seq_dir, tmp_path, capsys):
    _, d = seq_dir
    assert offline.main(["--input", str(tmp_path / "nope"), "--model", f"oracle:{d}", "--out", str(tmp_path / "o")]) == 2
    assert "cannot open input" in capsys.readouterr().err
    assert offline.main(["--input", str(d), "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "o"),
                         "--quiet"]) == 2
    assert "model" in capsys.readouterr().err


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_offline_from_rosbag2(seq_dir, tmp_path, storage):
    """The same sequence as a rosbag2 (images + CameraInfo): same answer."""
    from da3_ros.io import bags

    seq, d = seq_dir
    n = 16
    ts = bags.get_typestore()
    bag = tmp_path / "bag"
    with bags.open_writer(bag, storage=storage) as writer:
        info = bags.add_topic(writer, "/cam/camera_info", bags.CAMERA_INFO, ts)
        img = bags.add_topic(writer, "/cam/image_raw", bags.IMAGE, ts)
        for i in range(n):
            t = float(seq.stamps[i])
            ns = int(round(t * 1e9))
            writer.write(info, ns, bags.serialize(ts, bags.camera_info_msg(ts, seq.intrinsics, seq.width, seq.height, t)))
            writer.write(img, ns, bags.serialize(ts, bags.image_msg(ts, seq.images[i], "rgb8", t)))
    out = tmp_path / "run"
    rc = offline.main(["--input", str(bag), "--image-topic", "/cam/image_raw", "--camera-info-topic", "/cam/camera_info",
                       "--model", f"oracle:{d}", "--out", str(out), "--gt", str(d / "groundtruth.txt"), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    ev = summary["evaluation"]
    assert summary["frames_answered"] == n and ev["pose"]["ate_rmse_m"] < 1e-4 and ev["pose"]["frames"] == n
    assert ev["depth"] == {"error": "the layout has no ground-truth depth"}  # a bag has none
    assert json.loads((out / "intrinsics.json").read_text())["source"] == "camera_info"


def test_run_offline_on_a_rig_bag(tmp_path):
    """--cameras: a three-camera rig bag (extrinsics on /tf_static) grouped into rig
    frames and run as one window per rig frame with the exact oracle; every view
    answered, depth per camera, metric from the baselines (--base-frame)."""
    from da3_ros.io.writers import read_depth_png_mm
    from da3_ros.synthetic.rig import make_rig_sequence, write_rig_bag, write_rig_sequence

    rig = make_rig_sequence("three", "forward", n_frames=14, width=48, height=32, seed=4)
    write_rig_bag(rig, tmp_path / "bag", "/rig")
    write_rig_sequence(rig, tmp_path / "gt")
    rc = offline.main(["--input", str(tmp_path / "bag"), "--model", f"oracle:{tmp_path / 'gt'}", "--out",
                       str(tmp_path / "out"), "--cameras", "left,front,right", "--base-frame", rig.base_frame,
                       "--window-size", "9", "--quiet"])
    assert rc == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["views_answered"] == summary["views_in"] == len(rig.stamps), summary
    assert summary["rig"]["complete"] == len(rig) and summary["metric"]
    assert summary["rig"]["state"]["state"] == "metric"
    assert {c["state"] for c in summary["rig"]["state"]["cameras"].values()} == {"metric"}
    assert summary["cameras"] == {c: f"/rig/{c}/image" for c in rig.camera_names}
    # the last rig frame's depth, per camera, in metres
    k = len(rig) - 1
    for c in rig.camera_names:
        v = rig.view(k, c)
        path = max((tmp_path / "out" / "depth").glob(f"{c}_*.png"), key=lambda q: int(q.stem.split("_")[1]))
        depth = read_depth_png_mm(path)
        ok = depth > 0
        np.testing.assert_allclose(depth[ok], rig.depth[v][ok], atol=2e-3)
    assert len(read_tum(tmp_path / "out" / "trajectory.tum")[0]) == len(rig)  # one pose per rig frame


def test_offline_trajectory_is_the_world_s_and_says_what_it_leaves_out(seq_dir, tmp_path):
    """trajectory.tum is the world's one trajectory (path_max_length poses, the
    node's setting of the same name): a shorter cap keeps the newest poses and
    the summary says so."""
    seq, d = seq_dir
    out = tmp_path / "run"
    rc = offline.main(["--input", str(d), "--model", f"oracle:{d}", "--out", str(out), "--max-frames", "14",
                       "--path-max-length", "10", "--no-frames", "--quiet", "--gt", "none"])
    assert rc == 0
    stamps, c2w = read_tum(out / "trajectory.tum")
    np.testing.assert_allclose(stamps, seq.stamps[4:14], atol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_answered"] == 14 and "last 10 of its 14 poses" in summary["trajectory_note"]
