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

Rigs (`evaluate_rig`, the held-out scenes of `data.held_out_rigs`):
* `rig_baselines`: what the rig's metric scale rests on. Windows of 4 rig frames
  (every camera, as the node's rig windows hold them); in each, the model's
  translation between two cameras of one rig frame, put in metres by the window's
  own depth scale against the ground truth, projected on the calibrated baseline:
  `ratio` = that over the baseline's length (1: right; < 0: the wrong way);
* the stream itself (`Streamer.push_rig` with the extrinsics, as /tf_static gives
  them): the rig's state (`rig_state`), metres per unit, the depth scale error per
  camera on the second half (after the scale had time to settle; no ground-truth
  scale is used) and the ATE of the first camera after an SE(3) fit.

`python -m da3_ros.train.evaluate --model <dir|default|random:da3-tiny>` prints
one line per held-out sequence and the mean (`--rig`: the held-out rigs).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
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


def _rig_windows(rig, rig_frames: int = 4, step: int = 2, hop: int = 3):
    """Rig frame lists of the windows `rig_baselines` asks about."""
    span = (rig_frames - 1) * step
    return [[k + j * step for j in range(rig_frames)] for k in range(0, len(rig) - span, hop)]


def rig_baselines(model, rig, rig_frames: int = 4, step: int = 2, hop: int = 3, max_windows: Optional[int] = None) -> dict:
    """The model's baselines between cameras of one rig frame against the
    calibration (module docstring). Returns ratio_median / ratio_mean /
    right_way (fraction with the right sign), per pair `pairs` {"a-b": median ratio}
    and `n` (measurements)."""
    from ..geometry.transforms import inv_se3

    names = rig.camera_names
    ratios: Dict[str, list] = {}
    windows = _rig_windows(rig, rig_frames, step, hop)[:max_windows]
    for frames_k in windows:
        views = [v for k in frames_k for v in np.flatnonzero(rig.view_frame == k)]
        frames = [rig.frame(int(v), i, with_intrinsics=True) for i, v in enumerate(views)]
        handles = [model.encode(f) for f in frames]
        pred = model.predict(frames, handles, list(range(len(views))))
        gt_d = np.stack([rig.depth[v] for v in views]).astype(np.float64)
        pr_d = np.stack([pred.depth[i] for i in range(len(views))]).astype(np.float64)
        ok = np.isfinite(gt_d) & (gt_d > 0) & np.isfinite(pr_d) & (pr_d > 0)
        metres = float(np.median(gt_d[ok] / pr_d[ok]))  # metres per window unit, from depth
        c2w = np.asarray(pred.c2w, np.float64)
        for k in frames_k:
            at = {names[rig.view_camera[v]]: i for i, v in enumerate(views) if rig.view_frame[v] == k}
            for ia, a in enumerate(names):
                for b in names[ia + 1:]:
                    if a not in at or b not in at:
                        continue
                    T_ab = rig.relative_extrinsics(a, b)[:3, 3]
                    L = float(np.linalg.norm(T_ab))
                    t = (inv_se3(c2w[at[a]]) @ c2w[at[b]])[:3, 3] * metres
                    ratios.setdefault(f"{a}-{b}", []).append(float(t @ T_ab) / L ** 2)
    allr = np.concatenate([np.asarray(r) for r in ratios.values()]) if ratios else np.zeros(0)
    return {"ratio_median": float(np.median(allr)) if allr.size else float("nan"),
            "ratio_mean": float(np.mean(allr)) if allr.size else float("nan"),
            "right_way": float(np.mean(allr > 0)) if allr.size else float("nan"),
            "pairs": {k: float(np.median(v)) for k, v in ratios.items()}, "n": int(allr.size), "windows": len(windows)}


def run_rig_stream(model, rig, cfg: Optional[StreamConfig] = None):
    """The rig through the streaming core as the node feeds it: every rig frame
    with CameraInfo intrinsics and the /tf_static extrinsics."""
    names = tuple(rig.camera_names)
    st = Streamer(model, cfg or StreamConfig(window_size=4 * len(names), stride=1, cameras=names))
    res = []
    for frames in rig.rig_frames(with_intrinsics=True, with_extrinsics=True):
        res += st.push_rig([replace(f, meta=f.camera) for f in frames])  # results say their camera
    res += st.flush()
    return st, res


def score_rig(rig, streamer, results) -> Dict[str, object]:
    """The rig's state, depth scale error per camera (second half, the stream's
    unit taken as metres) and the first camera's ATE (SE(3): no scale fitted)."""
    from ..geometry.transforms import inv_se3

    names = rig.camera_names
    out: Dict[str, object] = {"metres_per_unit": streamer.rig.metres_per_unit, "rig_status": streamer.rig.status(),
                              "cameras": {}}
    for c in names:
        mine = [r for r in results if r.meta == c]
        late = mine[len(mine) // 2:]
        if not late:
            continue
        views = [rig.index_of_frame(_FrameKey(r.stamp, c)) for r in late]
        gt = np.stack([rig.depth[v] for v in views]).astype(np.float64)
        pr = np.stack([r.depth for r in late]).astype(np.float64)
        ok = np.isfinite(gt) & (gt > 0) & np.isfinite(pr) & (pr > 0)
        out["cameras"][c] = {"answered": len(mine), "depth_scale_error": float(np.median(gt[ok] / pr[ok]) - 1.0)}
    traj = streamer.trajectory()
    gt_c2w = np.stack([rig.c2w[rig.index_of_frame(_FrameKey(t, names[0]))] for t in traj.stamps])
    gt_rel = inv_se3(gt_c2w[0]) @ gt_c2w
    out["ate_se3_m"] = ate(traj.c2w, gt_rel, "se3").rmse
    out["frames_answered"] = len(traj)
    return out


class _FrameKey:
    """What `RigSequence.index_of_frame` reads of a frame: its stamp and camera."""

    def __init__(self, stamp: float, camera: str):
        self.stamp, self.camera = stamp, camera


def _metric_words(m: dict) -> str:
    k = m["metres_per_unit"]
    return f"metric ({k:.4f} m per unit)" if k else "not metric"


def evaluate_rig(model, rigs: Iterable, verbose: bool = True, max_windows: Optional[int] = None) -> Dict[str, dict]:
    """`rig_baselines` and the stream's scores (`score_rig`) for each rig."""
    out = {}
    for rig in rigs:
        t = time.perf_counter()
        m = {"baselines": rig_baselines(model, rig, max_windows=max_windows)}
        st, res = run_rig_stream(model, rig)
        m.update(score_rig(rig, st, res))
        m["seconds"] = time.perf_counter() - t
        out[rig.name] = m
        if verbose:
            b = m["baselines"]
            errs = ", ".join(f"{c} {100 * v['depth_scale_error']:+.1f}%" for c, v in m["cameras"].items())
            print(f"{rig.name:14s} baseline ratio {b['ratio_median']:.3f} (right way {100 * b['right_way']:.0f}%, "
                  f"{b['n']} pairs); stream: {_metric_words(m)}; depth scale error {errs}; "
                  f"ATE SE(3) {m['ate_se3_m']:.3f} m ({m['seconds']:.1f} s)", flush=True)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="held-out streaming evaluation of a DA3 model on synthetic sequences")
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--process-res", type=int, default=EMBEDDED_PROCESS_RES)
    p.add_argument("--pose-source", default="ray", choices=["ray", "camera"])
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--json", default=None)
    p.add_argument("--rig", action="store_true", help="the held-out rigs (stereo and three cameras, windows of 4 rig frames)")
    a = p.parse_args(argv)
    from ..runtime.da3_model import DA3WindowModel
    from .data import held_out_sequences

    spec = a.model
    if spec == "default":
        from ..weights import resolve_default_model

        spec, desc = resolve_default_model()
        print(desc)
    model = DA3WindowModel(spec, device=a.device, precision="auto", process_res=a.process_res, pose_source=a.pose_source)
    if a.rig:
        from .data import held_out_rigs

        res = evaluate_rig(model, held_out_rigs(a.frames))
    else:
        res = evaluate(model, held_out_sequences(a.frames), StreamConfig(window_size=a.window, stride=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
