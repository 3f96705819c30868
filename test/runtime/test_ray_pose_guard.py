"""Accuracy guard of the node's default ray poses (issue 12, point 1).

The node fits poses and intrinsics to a quarter-resolution ray map (`ray_map="quarter"`:
the ray head run no finer than 2 x the patch grid, a 16th of the official map's
pixels). On the
held-out synthetic sequences, streamed by the embedded da3-tiny exactly as
`test_embedded_model.py` runs them and scored as `da3_ros.train.evaluate` scores them,
its trajectory ATE and intrinsics error must stay within 5 % of (or below) those of the
official full-resolution ray map of every view (`ray_map="full"`, the path before).
The same frames and network go through both; only the ray map differs.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from da3_ros.stream import StreamConfig
from da3_ros.train.data import HELD_OUT
from da3_ros.train.evaluate import run_stream, score_stream
from da3_ros.weights import EMBEDDED_DIR, EMBEDDED_PROCESS_RES

#: held-out sequences with camera motion (a pure rotation has no trajectory to score)
SEQUENCES = ("forward", "orbit", "stop_and_go")
N_FRAMES = 14
TOLERANCE = 1.05
NODE_RAY_MAP = "quarter"  # DA3WindowModel's default


def intrinsics_error(seq, results) -> float:
    """Mean relative focal-length error of the published (estimated) intrinsics."""
    K = seq.intrinsics
    return float(np.mean([0.5 * (abs(r.intrinsics[0, 0] - K[0, 0]) / K[0, 0] + abs(r.intrinsics[1, 1] - K[1, 1]) / K[1, 1])
                          for r in results]))


@pytest.fixture(scope="module")
def scores():
    import torch

    from da3_ros.model import load_model
    from da3_ros.runtime.da3_model import DA3WindowModel
    from da3_ros.synthetic import make_sequence

    torch.set_num_threads(min(2, torch.get_num_threads()))
    net = load_model(str(EMBEDDED_DIR), device="cpu", dtype=torch.float32)
    held_out = dict(HELD_OUT)
    seqs = [make_sequence(name, N_FRAMES, 320, 240, held_out[name]) for name in SEQUENCES]
    out = {}
    for ray_map in ("full", NODE_RAY_MAP):
        model = DA3WindowModel(net, device="cpu", precision="fp32", process_res=EMBEDDED_PROCESS_RES,
                               pose_source="ray", ray_map=ray_map)
        t = time.perf_counter()
        per_seq = []
        for seq in seqs:
            _, res = run_stream(model, seq, StreamConfig(window_size=8, stride=1))
            assert len(res) == N_FRAMES
            per_seq.append((score_stream(seq, res)["ate_sim3"], intrinsics_error(seq, res)))
        out[ray_map] = {"ate": float(np.mean([a for a, _ in per_seq])), "k_err": float(np.mean([k for _, k in per_seq])),
                        "per_sequence": per_seq, "seconds": time.perf_counter() - t}
    return out


def _report(scores) -> str:
    return "; ".join(f"{m}: ATE sim3 {s['ate']:.4f} m, focal error {100 * s['k_err']:.2f} % "
                     f"(per sequence {', '.join(f'{a:.3f}/{100 * k:.1f}%' for a, k in s['per_sequence'])}; "
                     f"{s['seconds']:.1f} s)" for m, s in scores.items())


def test_node_default_is_the_guarded_ray_map():
    import inspect

    from da3_ros.runtime.da3_model import DA3WindowModel

    assert inspect.signature(DA3WindowModel).parameters["ray_map"].default == NODE_RAY_MAP


def test_node_ray_map_trajectory_within_5_percent_of_full(scores):
    msg = _report(scores)
    print(msg)
    assert scores[NODE_RAY_MAP]["ate"] <= TOLERANCE * scores["full"]["ate"], msg


def test_node_ray_map_intrinsics_within_5_percent_of_full(scores):
    msg = _report(scores)
    assert scores[NODE_RAY_MAP]["k_err"] <= TOLERANCE * scores["full"]["k_err"], msg


def test_the_guard_can_fail(scores):
    """The scores are real and small enough that a broken pose path would show: on the
    forward sequence both paths are far below a camera standing still (whose Sim(3) ATE is
    the spread of the true centres about their mean), and the focal errors are a few %."""
    from da3_ros.synthetic import make_sequence

    seq = make_sequence("forward", N_FRAMES, 320, 240, dict(HELD_OUT)["forward"])
    c = seq.c2w[:, :3, 3]
    standing = float(np.sqrt(np.mean(np.sum((c - c.mean(0)) ** 2, axis=1))))
    for m, s in scores.items():
        assert s["per_sequence"][0][0] < 0.5 * standing, (m, s, standing)
        assert 0 < s["k_err"] < 0.2, (m, s)
