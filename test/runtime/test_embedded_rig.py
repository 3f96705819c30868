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
                          pose_from="camera")  # the camera head: what the demo runs; seconds on two cores


@pytest.mark.parametrize("layout", ["stereo", "three"])
def test_shipped_model_sees_the_rig_baseline(model, layout):
    from da3_ros.train.data import held_out_rigs

    (rig,) = held_out_rigs(N_RIG_FRAMES, layouts=(layout,), trajectories=("orbit",))
    b = rig_baselines(model, rig)
    assert b["windows"] == 3 and b["n"] == 3 * 4 * (1 if layout == "stereo" else 3)
    assert b["right_way"] >= MIN_RIGHT_WAY, b
    assert abs(b["ratio_median"] - 1.0) <= MAX_LENGTH_ERROR, b
