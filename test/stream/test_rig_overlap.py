"""The rig's metric scale from the image overlap of two calibrated cameras
(stream.rig_overlap), on rendered rigs whose depth and extrinsics are exact.

Tolerance: the answer rests on the parallax of a's samples in b, found to a
fraction of a work pixel (bilinear sampling, a parabola through the cost's
three lowest candidates). A quarter work pixel over the median parallax bounds
the relative error of one answer; with exact depth nothing else enters."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from da3_ros.geometry.transforms import inv_se3
from da3_ros.stream import StreamConfig
from da3_ros.stream.rig_metric import RigMetric
from da3_ros.stream.rig_overlap import WORK_WIDTH, overlap_scale
from da3_ros.synthetic import make_rig_sequence

#: metres per stream unit the tests hide in the depth
UNIT = 0.37


@pytest.fixture(scope="module")
def stereo():
    return make_rig_sequence("stereo", "orbit", n_frames=6, width=320, height=240, seed=11, jitter=0.0)


def pair(rig, k, a, b):
    views = {rig.camera_names[rig.view_camera[v]]: int(v) for v in np.flatnonzero(rig.view_frame == k)}
    va, vb = views[a], views[b]
    K = rig.view_intrinsics([va, vb])
    return va, vb, K[0], K[1], inv_se3(rig.relative_extrinsics(a, b))


def tolerance(rig, va, K_a, T_b_a):
    """A quarter work pixel over the median parallax (module docstring)."""
    step = max(1, int(np.ceil(rig.images[va].shape[1] / WORK_WIDTH)))
    parallax = K_a[0, 0] / step * np.linalg.norm(T_b_a[:3, 3]) / np.median(rig.depth[va])
    return 0.25 / parallax


@pytest.mark.parametrize("k", [0, 3, 5])
def test_exact_depth_gives_the_scale(stereo, k):
    va, vb, Ka, Kb, Tba = pair(stereo, k, "left", "right")
    r = overlap_scale(stereo.images[va], stereo.depth[va] / UNIT, Ka, stereo.images[vb], Kb, Tba)
    assert r is not None and r.overlap > 0.8
    assert r.metres_per_unit == pytest.approx(UNIT, rel=tolerance(stereo, va, Ka, Tba))


def test_gain_and_offset_between_the_cameras_do_not_matter(stereo):
    va, vb, Ka, Kb, Tba = pair(stereo, 2, "right", "left")
    darker = np.clip(stereo.images[vb].astype(np.float32) * 0.6 + 40, 0, 255).astype(np.uint8)
    r = overlap_scale(stereo.images[va], stereo.depth[va] / UNIT, Ka, darker, Kb, Tba)
    assert r is not None
    assert r.metres_per_unit == pytest.approx(UNIT, rel=tolerance(stereo, va, Ka, Tba))


def test_cameras_that_see_nothing_in_common_give_no_answer():
    """The three-camera ring's left and right cameras look 120 degrees apart."""
    rig = make_rig_sequence("three", "orbit", n_frames=2, width=320, height=240, seed=11, jitter=0.0)
    va, vb, Ka, Kb, Tba = pair(rig, 1, "left", "right")
    assert overlap_scale(rig.images[va], rig.depth[va] / UNIT, Ka, rig.images[vb], Kb, Tba) is None


def test_no_baseline_gives_no_answer(stereo):
    va, vb, Ka, Kb, _ = pair(stereo, 0, "left", "right")
    assert overlap_scale(stereo.images[va], stereo.depth[va], Ka, stereo.images[vb], Kb, np.eye(4)) is None


def test_overlap_fixes_the_scale_where_the_model_baseline_disagrees(stereo):
    """The model's poses put the right camera on the wrong side (its baseline is
    rejected) but its depth is right: the overlap alone makes the rig metric, and
    the state says where the scale came from and what the baselines said."""
    cfg = StreamConfig(window_size=4, stride=1, cameras=("left", "right"))
    rig_metric = RigMetric(cfg)
    factor = None
    names = np.asarray(stereo.camera_names)
    for k, frames in enumerate(stereo.rig_frames(with_intrinsics=True, with_extrinsics=True)):
        at = {str(names[stereo.view_camera[v]]): int(v) for v in np.flatnonzero(stereo.view_frame == k)}
        views, newest = [], []
        for f in frames:
            c2w = stereo.c2w[at[f.camera]].astype(np.float64).copy()
            if f.camera == "right":  # the model's baseline, mirrored through the left camera
                c2w[:3, 3] = 2 * stereo.c2w[at["left"]][:3, 3] - c2w[:3, 3]
            c2w[:3, 3] /= UNIT
            views.append((k, f, c2w))
            newest.append((f, stereo.depth[at[f.camera]] / UNIT, f.intrinsics))
        out = rig_metric.observe(views, False, k + 1, replace(cfg, rig_scale_min_frames=3), newest)
        factor = out if out is not None else factor
    va, _, Ka, _, Tba = pair(stereo, 0, "left", "right")
    assert factor == pytest.approx(UNIT, rel=tolerance(stereo, va, Ka, Tba))
    state = rig_metric.state()
    assert state.state == "metric" and rig_metric.source == "overlap"
    for c in ("left", "right"):
        detail = state.cameras[c].detail
        assert state.cameras[c].state == "metric" and "from the image overlap with" in detail, detail
        assert "the model's baselines:" in detail and "deg away" in detail, detail
    status = rig_metric.status()
    # asked every rig frame until metric (after the 3rd), then every OVERLAP_CHECK_EVERY-th
    assert RigMetric.OVERLAP_CHECK_EVERY > 6
    assert status["scale_source"] == "overlap" and status["overlap_left_right"] == "3/3 rig frames answered"
