"""Held-out evaluation of a window model through the streaming core.

Metrics (all against the synthetic ground truth, metres):
* depth AbsRel / delta1 over every pixel with valid ground truth (no confidence
  filter), after ONE median scale per sequence (gt / pred over all frames): the
  stream's depth must be consistent in scale across the sequence;
  `abs_rel_frame` aligns each frame by its own median instead;
* ATE RMSE of camera centres after Sim(3) Umeyama alignment (`ate_sim3`), and
  after putting the estimate in metres with the depth scale and an SE(3)
  alignment (`ate_se3_depth_scale`; well-defined for the pure-rotation
  sequence, where a Sim(3) scale from centres is not).

`python -m da3_ros.train.evaluate --model <dir|default|random:da3-tiny>` prints
one line per held-out sequence and the mean.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, Iterable, Optional

import numpy as np

from ..geometry import ate, depth_metrics
from ..stream import StreamConfig, Streamer

#: network input size (longest side) the embedded model is trained and run at
from ..weights import EMBEDDED_PROCESS_RES  # noqa: E402


def run_stream(model, seq, cfg: Optional[StreamConfig] = None, with_intrinsics: bool = False):
    st = Streamer(model, cfg or StreamConfig(window_size=8, stride=1))
    res = []
    for f in seq.frames(with_intrinsics=with_intrinsics):
        res += st.push(f)
    res += st.flush()
    return st, res


def score_stream(seq, results) -> Dict[str, float]:
    idx = np.array([r.index for r in results])
    gt_d = seq.depth[idx].astype(np.float64)
    pr_d = np.stack([r.depth for r in results]).astype(np.float64)
    ok = np.isfinite(gt_d) & (gt_d > 0) & np.isfinite(pr_d) & (pr_d > 0)
    scale = float(np.median(gt_d[ok] / pr_d[ok]))
    d = depth_metrics(pr_d, gt_d, scale=scale)
    per_frame = []
    for i in range(len(idx)):
        o = ok[i]
        s_i = np.median(gt_d[i][o] / pr_d[i][o])
        per_frame.append(depth_metrics(pr_d[i], gt_d[i], scale=s_i).abs_rel)
    est = np.array([r.c2w for r in results])
    gt = seq.c2w[idx]
    a_sim3 = ate(est, gt, "sim3")
    est_m = est.copy()
    est_m[:, :3, 3] *= scale
    a_se3 = ate(est_m, gt, "se3")
    path = float(np.sum(np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1)))
    return {"abs_rel": d.abs_rel, "delta1": d.delta1, "abs_rel_frame": float(np.mean(per_frame)),
            "ate_sim3": a_sim3.rmse, "ate_se3_depth_scale": a_se3.rmse, "path_length": path,
            "frames": int(len(idx)), "depth_scale": scale}


def evaluate(model, sequences: Iterable, cfg: Optional[StreamConfig] = None, verbose: bool = True) -> Dict[str, dict]:
    out = {}
    for seq in sequences:
        t = time.perf_counter()
        _, res = run_stream(model, seq, cfg)
        m = score_stream(seq, res)
        m["seconds"] = time.perf_counter() - t
        out[seq.name] = m
        if verbose:
            print(f"{seq.name:12s} AbsRel {m['abs_rel']:.4f} (per-frame {m['abs_rel_frame']:.4f}) delta1 {m['delta1']:.4f} "
                  f"ATE sim3 {m['ate_sim3']:.4f} m, se3+depth scale {m['ate_se3_depth_scale']:.4f} m "
                  f"(path {m['path_length']:.2f} m, {m['frames']} frames, {m['seconds']:.1f} s)", flush=True)
    keys = ["abs_rel", "delta1", "abs_rel_frame", "ate_sim3", "ate_se3_depth_scale"]
    out["mean"] = {k: float(np.mean([v[k] for v in out.values()])) for k in keys}
    if verbose:
        m = out["mean"]
        print("mean         " + ", ".join(f"{k} {m[k]:.4f}" for k in keys), flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="held-out streaming evaluation of a DA3 model on synthetic sequences")
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--process-res", type=int, default=EMBEDDED_PROCESS_RES)
    p.add_argument("--pose-from", default="ray", choices=["ray", "camera"])
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from ..runtime.da3_model import DA3WindowModel
    from .data import held_out_sequences

    spec = a.model
    if spec == "default":
        from ..weights import resolve_default_model

        spec, desc = resolve_default_model()
        print(desc)
    model = DA3WindowModel(spec, device=a.device, precision="auto", process_res=a.process_res, pose_from=a.pose_from)
    res = evaluate(model, held_out_sequences(a.frames), StreamConfig(window_size=a.window, stride=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
