"""run-offline's evaluation on the field's dataset layouts (TUM RGB-D, 7-Scenes,
plain folder), through the streaming core, against synthetic ground truth:
exact oracles give zero error, the noisy oracle's numbers equal an independent
computation here (numpy, evo), missing ground truth is skipped and counted."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
from dataset_layouts import (TUM_T0, seven_scenes_depth_m, tum_depth_m, with_stamps, write_depth_npy,
                             write_seven_scenes, write_tum_rgbd)
from scipy.spatial.transform import Rotation

from da3_ros.io.writers import read_tum
from da3_ros.runtime import offline
from da3_ros.synthetic import write_sequence

N = 30
W, H = 64, 48
WINDOW = 6


@pytest.fixture(scope="module")
def tum(tmp_path_factory, sequence_cache):
    """(sequence, oracle folder, TUM RGB-D folder) with epoch stamps like the real data's."""
    seq = with_stamps(sequence_cache("orbit", n_frames=N, width=W, height=H), TUM_T0 + np.arange(N) / 30.0)
    root = tmp_path_factory.mktemp("tum")
    return seq, write_sequence(seq, root / "oracle", depth_png=False), write_tum_rgbd(seq, root)


def run(args, out):
    rc = offline.main(args + ["--out", str(out), "--quiet", "--window-size", str(WINDOW)])
    summary = json.loads((out / "summary.json").read_text())
    with open(out / "frames.csv") as f:
        rows = list(csv.DictReader(f))
    return rc, summary, rows


def test_tum_rgbd_exact_oracle(tum, tmp_path, capsys):
    seq, oracle, d = tum
    rc, summary, rows = run(["--input", str(d), "--model", f"oracle:{oracle}"], tmp_path / "run")
    assert rc == 0
    ev = summary["evaluation"]
    assert summary["input_kind"] == "tum_rgbd" and ev["layout"] == "tum_rgbd"
    assert ev["frames"] == {"input": N, "answered": N, "depth_evaluated": N, "pose_evaluated": N,
                            "pose_unassociated": 0,
                            "depth_skipped": {"no_depth_gt": 0, "unreadable": 0, "no_valid_pixels": 0}}
    dep = ev["depth"]
    assert dep["alignment"].startswith("median scaling per sequence") and dep["pixels"] == N * W * H
    # the only error left is the format's: depth stored in steps of 1/5000 m
    q = np.stack([tum_depth_m(seq, i) for i in range(N)]).astype(np.float64)
    quantisation = np.nanmean(np.abs(q - seq.depth) / q)
    assert 0 <= dep["abs_rel"] <= 2 * quantisation < 1e-4
    assert dep["delta1"] == 1.0 and dep["rmse_m"] < 1e-4
    assert dep["constant_depth_reference"]["abs_rel"] > 0.2  # the reference is no model
    pose = ev["pose"]
    assert pose["alignment"].startswith("Sim(3)") and pose["frames"] == N
    assert pose["ate_rmse_m"] < 1e-6 and pose["rpe_trans_rmse_m"] < 1e-6 and pose["rpe_rot_rmse_deg"] < 1e-4
    assert pose["auc"]["auc3"] == 1.0 and pose["auc"]["auc30"] == 1.0
    assert pose["auc"]["pairs"] == sum(min(WINDOW - 1, N - 1 - i) for i in range(N))
    assert "definition" in pose["auc"] and "max(rotation" in pose["auc"]["definition"]
    # the scale the poses needed is the one the depth needed: one world unit
    assert pose["scale_to_gt"] == pytest.approx(dep["scale"], rel=1e-4)
    assert len(rows) == N and all(r["depth_status"] == "evaluated" and r["pose_gt"] == "1" for r in rows)
    assert float(rows[7]["abs_rel"]) < 1e-4 and float(rows[7]["stamp"]) == pytest.approx(seq.stamps[7], abs=1e-6)
    printed = capsys.readouterr().out
    assert "AbsRel" in printed and "AUC@30 1.000" in printed
    _check_picture(tmp_path / "run", printed)


def _check_picture(out, printed):
    from da3_ros.io import plots

    if not plots.available():
        assert "summary.png skipped: matplotlib is not installed" in printed
        pytest.skip("matplotlib is not installed: the picture is skipped (and says so)")
    from PIL import Image

    with Image.open(out / "summary.png") as img:
        assert img.size[0] > 800 and img.size[1] > 600


def test_tum_rgbd_noisy_oracle_matches_independent_computation(tum, tmp_path, monkeypatch):
    evo_metrics = pytest.importorskip("evo.core.metrics")
    from evo.core.trajectory import PoseTrajectory3D

    from da3_ros.runtime import evaluation

    # medians of more values than fit in memory: the evaluation passes over the frames again
    monkeypatch.setattr(evaluation, "MEDIAN_MAX_KEEP", 1000)
    seq, oracle, d = tum
    out = tmp_path / "run"
    rc, summary, rows = run(["--input", str(d), "--model", f"noisy-oracle:{oracle}"], out)
    assert rc == 0
    ev = summary["evaluation"]

    # depth: the runner's own per-frame outputs against the TUM PNGs read here
    pred = np.stack([np.load(out / "depth" / f"{i:06d}.npy") for i in range(N)]).astype(np.float64)
    gt = np.stack([tum_depth_m(seq, i) for i in range(N)]).astype(np.float64)
    ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pred)
    s = np.median(gt[ok & (pred > 0)] / pred[ok & (pred > 0)])
    p, g = pred[ok] * s, gt[ok]
    ratio = np.maximum(p / g, g / p)
    dep = ev["depth"]
    assert dep["scale"] == pytest.approx(s, rel=1e-12)
    assert dep["pixels"] == ok.sum()
    assert dep["abs_rel"] == pytest.approx(np.mean(np.abs(p - g) / g), rel=1e-9)
    assert dep["sq_rel_m"] == pytest.approx(np.mean((p - g) ** 2 / g), rel=1e-9)
    assert dep["rmse_m"] == pytest.approx(np.sqrt(np.mean((p - g) ** 2)), rel=1e-9)
    for k in (1, 2, 3):
        assert dep[f"delta{k}"] == pytest.approx(np.mean(ratio < 1.25**k), rel=1e-12)
    assert 0.005 < dep["abs_rel"] < 0.2  # the noise shows
    f7 = ok[7]
    assert float(rows[7]["abs_rel"]) == pytest.approx(np.mean(np.abs(pred[7][f7] * s - gt[7][f7]) / gt[7][f7]), rel=1e-6)

    # poses: evo (Sim(3) Umeyama, APE and RPE) on trajectory.tum against groundtruth.txt
    stamps, est = read_tum(out / "trajectory.tum")
    np.testing.assert_allclose(stamps, seq.stamps, atol=1e-6)
    ref = PoseTrajectory3D(poses_se3=list(seq.c2w), timestamps=seq.stamps)
    e = copy.deepcopy(PoseTrajectory3D(poses_se3=list(est), timestamps=stamps))
    e.align(ref, correct_scale=True)
    ape = evo_metrics.APE(evo_metrics.PoseRelation.translation_part)
    ape.process_data((ref, e))
    pose = ev["pose"]
    assert pose["ate_rmse_m"] == pytest.approx(ape.get_statistic(evo_metrics.StatisticsType.rmse), rel=1e-6)
    assert pose["ate_rmse_m"] > 1e-3  # the noise shows
    rpe_t = evo_metrics.RPE(evo_metrics.PoseRelation.translation_part, 1, evo_metrics.Unit.frames, all_pairs=True)
    rpe_t.process_data((ref, e))
    rpe_r = evo_metrics.RPE(evo_metrics.PoseRelation.rotation_angle_deg, 1, evo_metrics.Unit.frames, all_pairs=True)
    rpe_r.process_data((ref, e))
    assert pose["rpe_trans_rmse_m"] == pytest.approx(rpe_t.get_statistic(evo_metrics.StatisticsType.rmse), rel=1e-6)
    assert pose["rpe_rot_rmse_deg"] == pytest.approx(rpe_r.get_statistic(evo_metrics.StatisticsType.rmse), rel=1e-6)

    # AUC: every pair less than WINDOW frames apart, max(rotation, translation direction) error
    errs = []
    for i in range(N):
        for j in range(i + 1, min(i + WINDOW, N)):
            re_ = np.linalg.inv(est[i]) @ est[j]
            rg = np.linalg.inv(seq.c2w[i]) @ seq.c2w[j]
            rot = np.degrees(Rotation.from_matrix(rg[:3, :3].T @ re_[:3, :3]).magnitude())
            c = abs(re_[:3, 3] @ rg[:3, 3]) / (np.linalg.norm(re_[:3, 3]) * np.linalg.norm(rg[:3, 3]))
            errs.append(max(rot, np.degrees(np.arccos(min(c, 1.0)))))
    errs = np.array(errs)
    for T in (3, 30):
        assert pose["auc"][f"auc{T}"] == pytest.approx(np.mean([np.mean(errs < t) for t in range(1, T + 1)]), abs=1e-12)
    assert pose["auc"]["pairs"] == len(errs) and 0.0 < pose["auc"]["auc3"] < 1.0


def test_seven_scenes_metric_model_reports_unscaled_error(tmp_path, sequence_cache):
    """A metric model on ground truth 10% deeper than its metres: the unscaled
    error says so; median scaling would hide it."""
    seq = with_stamps(sequence_cache("orbit", n_frames=N, width=W, height=H), np.arange(N) / 30.0)
    oracle = write_sequence(seq, tmp_path / "oracle", depth_png=False)
    d = write_seven_scenes(seq, tmp_path / "chess", depth_factor=1.1, drop_depth=[3], drop_pose=[4])
    rc, summary, rows = run(["--input", str(d), "--model", f"oracle-metric:{oracle}"], tmp_path / "run")
    assert rc == 0 and summary["metric"] and summary["input_kind"] == "7scenes"
    ev = summary["evaluation"]
    dep = ev["depth"]
    assert dep["alignment"].startswith("none (metric model")
    assert dep["abs_rel"] == pytest.approx(0.1 / 1.1, abs=2e-3) and dep["delta1"] == 1.0
    assert dep["median_scaled"]["abs_rel"] < 1e-3
    assert dep["median_scaled"]["scale"] == pytest.approx(1.1, rel=1e-3)
    assert dep["pixels"] == sum(np.isfinite(seven_scenes_depth_m(seq, i, 1.1)).sum() for i in range(N) if i != 3)
    assert ev["frames"]["depth_skipped"]["no_depth_gt"] == 1 and ev["frames"]["pose_unassociated"] == 1
    pose = ev["pose"]
    assert pose["alignment"].startswith("SE(3)") and pose["ate_rmse_m"] < 1e-6 and pose["frames"] == N - 1
    assert rows[3]["depth_status"] == "no_depth_gt" and rows[4]["pose_gt"] == "0" and rows[4]["ate_error_m"] == ""


def test_plain_folder_npy_depth_exact(tmp_path, sequence_cache):
    seq = sequence_cache("orbit", n_frames=N, width=W, height=H)
    d = write_sequence(seq, tmp_path / "seq", depth_png=False)
    write_depth_npy(seq, d)
    rc, summary, _ = run(["--input", str(d), "--model", f"oracle:{d}", "--no-frames"], tmp_path / "run")
    assert rc == 0
    ev = summary["evaluation"]
    assert ev["layout"] == "folder" and ev["frames"]["depth_evaluated"] == N
    assert ev["depth"]["abs_rel"] < 1e-6 and ev["depth"]["delta1"] == 1.0 and ev["pose"]["ate_rmse_m"] < 1e-6
    # --no-frames: the evaluation's own copy of the predictions is gone afterwards
    assert not list((tmp_path / "run").glob(".eval_depth_*")) and not list((tmp_path / "run" / "depth").iterdir())


def test_missing_and_unassociated_ground_truth_is_skipped_and_counted(tum, tmp_path):
    seq, oracle, _ = tum
    d = write_tum_rgbd(seq, tmp_path, drop_depth=[2], missing_depth_files=[3], late_depth=[4], corrupt_depth=[5])
    # frame 6: a depth image without a single valid pixel; frame 9: no ground-truth pose
    d_stamps = [ln.split() for ln in (d / "depth.txt").read_text().splitlines() if not ln.startswith("#")]
    six = next(path for t, path in d_stamps if abs(float(t) - seq.stamps[6]) < 0.01)
    from PIL import Image

    Image.fromarray(np.zeros((H, W), np.uint16)).save(d / six)
    lines = (d / "groundtruth.txt").read_text().splitlines()
    (d / "groundtruth.txt").write_text("\n".join(ln for ln in lines if not ln.startswith(f"{seq.stamps[9]:.6f}")) + "\n")
    rc, summary, rows = run(["--input", str(d), "--model", f"oracle:{oracle}"], tmp_path / "run")
    assert rc == 0 and summary["frames_answered"] == N
    ev = summary["evaluation"]
    assert ev["ground_truth"]["depth_unassociated"] == 2 and ev["ground_truth"]["depth_files_missing"] == 1
    assert ev["frames"]["depth_skipped"] == {"no_depth_gt": 3, "unreadable": 1, "no_valid_pixels": 1}
    assert ev["frames"]["depth_evaluated"] == N - 5 and ev["depth"]["frames"] == N - 5
    assert ev["frames"]["pose_unassociated"] == 1 and ev["pose"]["frames"] == N - 1
    assert ev["depth"]["abs_rel"] < 1e-4 and ev["pose"]["ate_rmse_m"] < 1e-6
    status = [r["depth_status"] for r in rows]
    assert status[2] == status[3] == status[4] == "no_depth_gt" and status[5].startswith("unreadable")
    assert status[6] == "no_valid_pixels" and status.count("evaluated") == N - 5


def test_gt_file_and_none(tum, tmp_path):
    seq, oracle, d = tum
    # --gt FILE: poses from the file (here: the first 10 only), depth still from the layout
    traj = tmp_path / "first10.txt"
    traj.write_text("\n".join((d / "groundtruth.txt").read_text().splitlines()[:3 + 10]) + "\n")
    rc, summary, _ = run(["--input", str(d), "--model", f"oracle:{oracle}", "--gt", str(traj)], tmp_path / "a")
    ev = summary["evaluation"]
    assert rc == 0 and ev["pose"]["frames"] == 10 and ev["frames"]["depth_evaluated"] == N
    assert str(traj) in ev["ground_truth"]["poses"]
    rc = offline.main(["--input", str(d), "--model", f"oracle:{oracle}", "--gt", "none", "--out", str(tmp_path / "b"),
                       "--quiet"])
    assert rc == 0 and "evaluation" not in json.loads((tmp_path / "b" / "summary.json").read_text())
    assert not (tmp_path / "b" / "frames.csv").exists()
    assert offline.main(["--input", str(d), "--model", f"oracle:{oracle}", "--gt", str(tmp_path / "nope.txt"),
                         "--out", str(tmp_path / "c"), "--quiet"]) == 2


def test_default_model_on_a_tum_folder(tum, tmp_path, embedded_default, capsys):
    """The done-when command: no --model. `default` resolves (here: the embedded
    da3-tiny; CI has no hub) and says so; the evaluation runs on its answers."""
    assert offline.build_parser().get_default("model") == "default"
    seq, _, d = tum
    out = tmp_path / "run"
    rc = offline.main(["--input", str(d), "--out", str(out), "--max-frames", "6", "--window-size", "3",
                       "--pose-source", "camera", "--device", "cpu", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr()
    assert "model 'default' -> embedded da3-tiny" in printed.err and "da3-tiny" in printed.out
    summary = json.loads((out / "summary.json").read_text())
    assert "da3-tiny" in summary["model"] and "synthetic" in summary["model_note"]
    ev = summary["evaluation"]
    assert ev["frames"]["depth_evaluated"] == 6 and ev["pose"]["frames"] == 6
    assert np.isfinite(ev["depth"]["abs_rel"]) and ev["depth"]["abs_rel"] < ev["depth"]["constant_depth_reference"]["abs_rel"]


def test_each_world_segment_gets_its_own_scale_and_alignment(tmp_path):
    """After a stream reset the world (frame and unit) restarts: depth scale and
    trajectory alignment are found per segment, the numbers pool them."""
    from da3_ros.geometry import Sim3
    from da3_ros.io.datasets import GroundTruth
    from da3_ros.runtime.evaluation import AnsweredFrame, evaluate

    rng = np.random.default_rng(5)
    n, per_segment_scale = 20, {0: 2.0, 1: 5.0}
    gt_c2w = np.tile(np.eye(4), (n, 1, 1))
    gt_c2w[:, :3, :3] = Rotation.from_rotvec(rng.normal(0, 0.2, (n, 3))).as_matrix()
    gt_c2w[:, :3, 3] = np.cumsum(rng.normal(0, 0.1, (n, 3)), axis=0)
    depth_files, answered = [], []
    worlds = {0: Sim3(0.5, Rotation.random(random_state=1).as_matrix(), rng.normal(size=3)),
              1: Sim3(0.2, Rotation.random(random_state=2).as_matrix(), rng.normal(size=3))}
    for i in range(n):
        seg = 0 if i < 12 else 1
        g = rng.uniform(0.5, 4.0, (6, 8)).astype(np.float32)
        g[0, 0] = np.nan  # invalid ground truth pixel
        np.save(tmp_path / f"gt{i}.npy", g)
        depth_files.append(tmp_path / f"gt{i}.npy")
        np.save(tmp_path / f"pred{i}.npy", g / np.float32(per_segment_scale[seg]))
        answered.append(AnsweredFrame(frame=i, source_index=i, stamp=i / 30.0, c2w=worlds[seg].apply_c2w(gt_c2w[i]),
                                      segment=seg, depth_file=tmp_path / f"pred{i}.npy"))
    gt = GroundTruth("folder", depth_files, trajectory=(np.arange(n) / 30.0, gt_c2w))
    ev = evaluate(answered, gt, metric=False, window=4).summary
    dep, pose = ev["depth"], ev["pose"]
    assert dep["scale"] is None and dep["scale_per_segment"] == pytest.approx({"0": 2.0, "1": 5.0}, rel=1e-6)
    assert dep["abs_rel"] < 1e-6 and dep["pixels"] == n * (6 * 8 - 1)
    assert pose["scale_per_segment"] == pytest.approx({"0": 2.0, "1": 5.0}, rel=1e-9)
    assert pose["ate_rmse_m"] < 1e-9 and pose["frames"] == n and pose["rpe_pairs"] == n - 2
    # AUC pairs never cross a reset: 12 and 8 frames, pairs less than 4 frames apart
    assert pose["auc"]["pairs"] == (3 * 12 - 6) + (3 * 8 - 6) and pose["auc"]["auc3"] == 1.0
    # one world for all: the second segment's depth off by 2.5x, its poses in another frame
    merged = [AnsweredFrame(a.frame, a.source_index, a.stamp, a.c2w, 0, a.depth_file) for a in answered]
    ev = evaluate(merged, gt, metric=False, window=4).summary
    assert ev["depth"]["abs_rel"] > 0.1 and ev["pose"]["ate_rmse_m"] > 0.05
