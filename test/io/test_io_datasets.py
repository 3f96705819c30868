"""da3_ros.io.datasets: TUM RGB-D, 7-Scenes and the plain folder's ground truth,
read through open_source like run-offline does."""

from __future__ import annotations

import numpy as np
import pytest
from dataset_layouts import (TUM_T0, seven_scenes_depth_m, tum_depth_m, with_stamps, write_depth_npy,
                             write_seven_scenes, write_tum_rgbd)
from PIL import Image

from da3_ros.io import datasets
from da3_ros.io.inputs import open_source
from da3_ros.io.sources import SourceError
from da3_ros.io.writers import read_depth_png
from da3_ros.synthetic import write_sequence

N = 12


@pytest.fixture(scope="module")
def seq(sequence_cache):
    return sequence_cache("orbit", n_frames=N, width=48, height=36)


def test_associate_takes_nearest_pairs_first_one_to_one():
    a = np.array([0.0, 0.010, 0.100, 0.500])
    b = np.array([0.012, 0.095, 0.300])
    ia, ib = datasets.associate(a, b, max_dt=0.02)
    # 0.010 and 0.0 both want 0.012: the nearer (0.010) wins; 0.500 has nothing within 0.02 s
    assert ia.tolist() == [1, 2] and ib.tolist() == [0, 1]
    ia, ib = datasets.associate(a, b[::-1], max_dt=0.02)  # b unsorted: indices into b as given
    assert ia.tolist() == [1, 2] and ib.tolist() == [2, 1]
    assert datasets.associate(a, np.zeros(0))[0].size == 0


def test_tum_rgbd_layout(tmp_path, seq):
    s = with_stamps(seq, TUM_T0 + np.arange(N) / 30.0)
    d = write_tum_rgbd(s, tmp_path, drop_depth=[2], missing_depth_files=[3], late_depth=[4], corrupt_depth=[5])
    src = open_source(d)
    assert src.kind == "tum_rgbd" and len(src) == N
    frames = list(src)
    assert [f.index for f in frames] == list(range(N))
    np.testing.assert_allclose([f.stamp for f in frames], s.stamps, atol=1e-6)
    np.testing.assert_array_equal(frames[7].image, s.images[7])
    np.testing.assert_allclose(frames[0].intrinsics, s.intrinsics)  # intrinsics.json beats the folder name
    gt = src.ground_truth
    assert gt.layout == "tum_rgbd" and gt.info["intrinsics"] == "intrinsics.json"
    assert [f is None for f in gt.depth_files] == [i in (2, 3, 4) for i in range(N)]
    assert gt.info["depth_unassociated"] == 2 and gt.info["depth_files_missing"] == 1
    np.testing.assert_array_equal(gt.depth(0), tum_depth_m(s, 0))  # 5000 units per metre, 0 -> NaN
    assert np.nanmax(np.abs(gt.depth(6) - s.depth[6])) <= 0.5 / 5000 + 1e-6
    assert gt.depth(2) is None
    with pytest.raises(datasets.GroundTruthError):
        gt.depth(5)
    stamps, c2w = gt.trajectory
    np.testing.assert_allclose(stamps, s.stamps, atol=1e-6)
    np.testing.assert_allclose(c2w, s.c2w, atol=1e-7)


@pytest.mark.parametrize("choice,expected", [("auto", "fr2"), ("fr3", "fr3"), ("none", None)])
def test_tum_published_intrinsics(tmp_path, seq, choice, expected):
    s = with_stamps(seq, TUM_T0 + np.arange(N) / 30.0)
    d = write_tum_rgbd(s, tmp_path, name="rgbd_dataset_freiburg2_desk", intrinsics_json=False)
    src = open_source(d, tum_intrinsics=choice, max_frames=1)
    K = next(iter(src)).intrinsics
    if expected is None:
        assert K is None and "estimated" in src.ground_truth.info["intrinsics"]
    else:
        fx, fy, cx, cy = datasets.TUM_INTRINSICS[expected]
        np.testing.assert_array_equal(K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        assert src.ground_truth.info["intrinsics"].startswith(expected)
    with pytest.raises(SourceError, match="TUM intrinsics"):
        open_source(d, tum_intrinsics="fr9")


def test_tum_association_tolerance_is_an_option(tmp_path, seq):
    s = with_stamps(seq, TUM_T0 + np.arange(N) / 30.0)
    d = write_tum_rgbd(s, tmp_path, late_depth=[1])
    assert open_source(d).ground_truth.depth_files[1] is None
    assert open_source(d, max_dt=0.06).ground_truth.depth_files[1] is not None


def test_tum_bad_list_line(tmp_path, seq):
    s = with_stamps(seq, TUM_T0 + np.arange(N) / 30.0)
    d = write_tum_rgbd(s, tmp_path)
    (d / "rgb.txt").write_text("# color\nabc rgb/x.png\n")
    with pytest.raises(SourceError, match="not a stamp"):
        open_source(d)


def test_seven_scenes_layout(tmp_path, seq):
    s = with_stamps(seq, np.arange(N) / 30.0)
    d = write_seven_scenes(s, tmp_path, drop_depth=[1], drop_pose=[2])
    (d / "frame-000003.pose.txt").write_text("1 2 3\n")  # broken: skipped, counted
    src = open_source(d)
    assert src.kind == "7scenes" and len(src) == N
    frames = list(src)
    np.testing.assert_allclose([f.stamp for f in frames], np.arange(N) / 30.0)
    np.testing.assert_array_equal(frames[0].intrinsics, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])
    gt = src.ground_truth
    assert gt.depth(1) is None
    np.testing.assert_array_equal(gt.depth(4), seven_scenes_depth_m(s, 4))  # mm, 65535 and 0 -> NaN
    assert np.isnan(gt.depth(4)[:4, :4]).all()
    stamps, c2w = gt.trajectory
    keep = [i for i in range(N) if i not in (2, 3)]
    np.testing.assert_allclose(stamps, keep / np.float64(30.0))
    np.testing.assert_allclose(c2w, s.c2w[keep], atol=1e-8)
    assert gt.info["pose_files_missing"] == 2 and gt.info["pose_files_unreadable"] == 1


def test_plain_folder_depth_and_trajectory(tmp_path, seq):
    d = write_sequence(seq, tmp_path / "seq", depth_png=True)
    write_depth_npy(seq, d)
    (d / "depth" / "000004.npy").unlink()  # this frame falls back to the millimetre PNG
    (d / "depth" / "000004.png").unlink()  # ... which is gone too: no depth
    src = open_source(d)
    assert src.kind == "folder"
    gt = src.ground_truth
    assert gt.layout == "folder" and gt.info["depth_files_missing"] == 1 and gt.depth(4) is None
    np.testing.assert_array_equal(gt.depth(3), seq.depth[3])  # .npy preferred: metres, exact
    assert gt.depth_files[3].suffix == ".npy"
    np.testing.assert_allclose(gt.trajectory[1], seq.c2w, atol=1e-7)
    # no ground truth at all: None
    bare = tmp_path / "bare"
    bare.mkdir()
    Image.fromarray(seq.images[0]).save(bare / "a.png")
    assert open_source(bare).ground_truth is None


def test_plain_folder_png_millimetres(tmp_path, seq):
    d = write_sequence(seq, tmp_path / "seq", depth_png=True)
    gt = open_source(d).ground_truth
    assert gt.depth_files[0].suffix == ".png"
    assert np.nanmax(np.abs(gt.depth(0) - seq.depth[0])) <= 0.0005 + 1e-6


def test_with_trajectory_replaces_poses(tmp_path, seq):
    d = write_sequence(seq, tmp_path / "seq")
    other = tmp_path / "other.tum"
    other.write_text("# t x y z qx qy qz qw\n1.0 0 0 0 0 0 0 1\n2.0 1 0 0 0 0 0 1\n")
    gt = open_source(d).ground_truth.with_trajectory(other)
    assert gt.trajectory[0].tolist() == [1.0, 2.0] and gt.has_depth
    with pytest.raises(datasets.GroundTruthError):
        gt.with_trajectory(tmp_path / "missing.tum")


def test_read_depth_png_units_and_invalid(tmp_path):
    raw = np.array([[0, 5000], [65535, 2500]], np.uint16)
    Image.fromarray(raw).save(tmp_path / "d.png")
    d = read_depth_png(tmp_path / "d.png", 5000.0, invalid=(0, 65535))
    assert np.isnan(d[0, 0]) and np.isnan(d[1, 0]) and d[0, 1] == 1.0 and d[1, 1] == 0.5
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="single-channel"):
        read_depth_png(tmp_path / "rgb.png", 1000.0)


def test_unreadable_ground_truth_files_do_not_stop_the_stream(tmp_path, seq):
    s = with_stamps(seq, TUM_T0 + np.arange(N) / 30.0)
    d = write_tum_rgbd(s, tmp_path)
    (d / "groundtruth.txt").write_text("# t x y z qx qy qz qw\n1.0 2.0 3.0\n")
    (d / "depth.txt").write_text("# depth\nnot-a-stamp depth/x.png\n")
    src = open_source(d)
    assert len(list(src)) == N
    gt = src.ground_truth
    assert gt.trajectory is None and gt.info["poses"].startswith("unreadable")
    assert not gt.has_depth and gt.info["depth"].startswith("unreadable")
