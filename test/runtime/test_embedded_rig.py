"""The embedded da3-tiny on held-out synthetic rigs (the demo's stereo pair and
three-camera ring on held-out scenes, never trained on): the baseline it sees
between two cameras of one rig frame, which the rig's metric scale rests on,
points the calibrated way and has the calibrated length within 20 %.

`train.evaluate.rig_baselines`: windows of 4 rig frames (every camera, as the
node's rig windows hold them); each window's translations are put in metres by
that window's own depth scale against the ground truth, so the check is on the
model's geometry, not on its unit. The median over the windows' pairs is what a
robust scale fit leans on.
"""

from __future__ import annotations

import pytest

from da3_ros.train.evaluate import rig_baselines
from da3_ros.weights import EMBEDDED_DIR, EMBEDDED_PROCESS_RES

#: rig frames of the held-out sequence: windows start at rig frames 0, 3 and 6
#: (4 rig frames 2 apart), 3 windows per rig
N_RIG_FRAMES = 13
MAX_LENGTH_ERROR = 0.2
#: the share of single measurements pointing the calibrated way
MIN_RIGHT_WAY = 0.9


@pytest.fixture(scope="module")
def model():
    from da3_ros.runtime.da3_model import DA3WindowModel

    return DA3WindowModel(str(EMBEDDED_DIR), device="cpu", precision="fp32", process_res=EMBEDDED_PROCESS_RES,
                          pose_source="camera")  # the camera head: what the demo runs; seconds on two cores


#: the checkpoint shipped now was trained on single cameras only (issue 22's rig training run
#: could not get a GPU): measured here, stereo: median ratio -0.84, 1 of 12 the right way;
#: three cameras: -0.004, 18 of 36. Strict: the test fails once a checkpoint passes, so the
#: marker goes with the new weights.
NOT_TRAINED_ON_RIGS = pytest.mark.xfail(strict=True, reason="the shipped da3-tiny has not been trained on rigs yet "
                                        "(issue 22: the rig training run needs the GPU device)")


@NOT_TRAINED_ON_RIGS
@pytest.mark.parametrize("layout", ["stereo", "three"])
def test_shipped_model_sees_the_rig_baseline(model, layout):
    from da3_ros.train.data import held_out_rigs

    (rig,) = held_out_rigs(N_RIG_FRAMES, layouts=(layout,), trajectories=("orbit",))
    b = rig_baselines(model, rig)
    assert b["windows"] == 3 and b["n"] == 3 * 4 * (1 if layout == "stereo" else 3)
    assert b["right_way"] >= MIN_RIGHT_WAY, b
    assert abs(b["ratio_median"] - 1.0) <= MAX_LENGTH_ERROR, b


@pytest.mark.parametrize("layout", ["stereo", "three"])
def test_rig_baselines_measure_the_model_against_the_calibration(layout):
    """The measure itself, on models whose answer is known: the exact oracle (an
    arbitrary unit per window) gives ratio 1 on every pair; the noisy oracle
    (DA3-like pose and depth errors) stays within a few percent, the right way."""
    from da3_ros.synthetic.oracle import NoisyOracleModel, OracleModel
    from da3_ros.synthetic.rig import make_rig_sequence

    rig = make_rig_sequence(layout, "orbit", n_frames=N_RIG_FRAMES, width=64, height=48, seed=9002, jitter=0.002)
    exact = rig_baselines(OracleModel(rig, max_scale=3.0, seed=1), rig)
    assert exact["right_way"] == 1.0 and exact["ratio_median"] == pytest.approx(1.0, abs=1e-6)
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in exact["pairs"].values())
    noisy = rig_baselines(NoisyOracleModel(rig, max_scale=3.0, seed=1), rig)
    assert noisy["right_way"] == 1.0 and abs(noisy["ratio_median"] - 1.0) < 0.05, noisy
