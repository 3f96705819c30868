"""The embedded da3-tiny network through the streaming core on a held-out
synthetic sequence (never trained on), against the ground truth.

Thresholds are the values measured with the shipped checkpoint (see the
constants) plus a margin. Depth is the discriminating part: random weights give
AbsRel ~0.4-0.6 here. The trajectory bound is a regression bound only: the
shipped network's poses are barely better than a constant guess (its Sim(3) ATE
is of the order of random weights'), which the report of issue 7 states.
"""

from __future__ import annotations

import time

import pytest

from da3_ros.stream import StreamConfig
from da3_ros.train.data import HELD_OUT
from da3_ros.train.evaluate import run_stream, score_stream
from da3_ros.weights import EMBEDDED_DIR, EMBEDDED_PROCESS_RES

SEQUENCE = "orbit"
N_FRAMES = 30
# measured with the shipped checkpoint (CPU, fp32, process_res 252, window 8, stride 1):
#   pose_from=camera: AbsRel 0.0566, delta1 0.9688, ATE (Sim(3)) 2.38 m on an 11.8 m path
#   pose_from=ray:    AbsRel 0.0572, delta1 0.9697, ATE (Sim(3)) 2.36 m (5-10x slower on a CPU: the
#                     ray solver; the node's default, checked by the GPU evaluation, not here)
#   random weights (camera): AbsRel 0.57, delta1 0.30, ATE 1.87 m
MAX_ABS_REL = 0.09
MIN_DELTA1 = 0.93
MAX_ATE_SIM3_M = 3.0
POSE_FROM = "camera"  # keeps the test at a few seconds on two cores


@pytest.fixture(scope="module")
def held_out():
    from da3_ros.synthetic import make_sequence

    seed = dict(HELD_OUT)[SEQUENCE]
    return make_sequence(SEQUENCE, N_FRAMES, 320, 240, seed)


def _model(spec, pose_from=POSE_FROM):
    import torch

    from da3_ros.stream.da3_model import DA3WindowModel

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return DA3WindowModel(spec, device="cpu", precision="fp32", process_res=EMBEDDED_PROCESS_RES, pose_from=pose_from)


def test_embedded_model_streams_held_out_sequence(held_out):
    t = time.perf_counter()
    _, res = run_stream(_model(str(EMBEDDED_DIR)), held_out, StreamConfig(window_size=8, stride=1))
    s = score_stream(held_out, res)
    msg = (f"embedded da3-tiny on held-out {SEQUENCE}: AbsRel {s['abs_rel']:.4f} (per-frame {s['abs_rel_frame']:.4f}), "
           f"delta1 {s['delta1']:.4f}, ATE sim3 {s['ate_sim3']:.3f} m (path {s['path_length']:.2f} m), "
           f"{time.perf_counter() - t:.1f} s")
    print(msg)
    assert len(res) == N_FRAMES, msg
    assert s["abs_rel"] < MAX_ABS_REL, msg
    assert s["delta1"] > MIN_DELTA1, msg
    assert s["ate_sim3"] < MAX_ATE_SIM3_M, msg


def test_random_weights_fail_the_depth_bound(held_out):
    """The same path with random weights (camera head: cheap) is far outside the bound."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model("random:da3-tiny", pose_from="camera")
    _, res = run_stream(model, held_out, StreamConfig(window_size=8, stride=1))
    s = score_stream(held_out, res)
    assert s["abs_rel"] > 2 * MAX_ABS_REL and s["delta1"] < 0.6, s


def test_factory_default_resolves_to_embedded_without_hub(monkeypatch, capsys):
    """`model: default` with no hub in reach: the embedded checkpoint at its own input size, said out loud."""
    from da3_ros import weights
    from da3_ros.stream.factory import make_model

    monkeypatch.delenv("DA3_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(weights, "hub_cached", lambda repo_id=weights.HUB_DEFAULT: False)
    monkeypatch.setattr(weights, "hub_reachable", lambda repo_id=weights.HUB_DEFAULT, timeout=3.0: False)
    m = make_model("default", device="cpu", process_res=504)
    assert m.net.variant == "da3-tiny" and m.process_res == EMBEDDED_PROCESS_RES
    assert "embedded da3-tiny" in capsys.readouterr().err
