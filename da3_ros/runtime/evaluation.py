"""Evaluation of an offline run against the ground truth of its input layout
(da3_ros.io.datasets): depth and pose metrics computed by da3_ros.geometry, a
per-frame table and the numbers of what could not be evaluated.

Depth (every answered frame with a ground-truth depth image): the prediction is
compared at the ground truth's resolution (nearest pixel when the sizes differ)
over the pixels whose ground truth is finite and > 0 and whose prediction is
finite: no confidence or depth-range mask. A relative model's depth is scaled by
one factor per sequence, s = median(gt / pred) over all those pixels (pixels
with pred > 0), its "median scaling"; a new world after a stream reset gets its
own factor. A metric model's depth is reported unscaled (the headline numbers)
and median-scaled. Metrics pool every pixel of the sequence (geometry.metrics).

Poses (answered frames whose stamp has a ground-truth pose within max_dt):
ATE after Sim(3) alignment for a relative model, SE(3) for a metric one (SE(3)
also when the ground-truth camera does not move: no scale then); RPE over
consecutive evaluated frames, translations at the alignment's scale; the AUC at
3 and 30 degrees of the relative-pose error over every pair of evaluated frames
less than `window` input frames apart (geometry.metrics.relative_pose_errors,
pose_auc: max of the rotation error and the translation-direction angle per
pair; scale-free). Each world segment (between stream resets) is aligned on its
own; the numbers pool the segments.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..geometry.align import DegenerateAlignment
from ..geometry.metrics import (AUC_THRESHOLDS_DEG, DepthErrorSums, StreamingMedian, ate,
                                depth_at_resolution, depth_valid_mask, pose_auc, relative_pose_errors, rpe,
                                window_pairs)
from ..io.datasets import ASSOCIATION_MAX_DT, GroundTruth, GroundTruthError, associate

#: frames shown in the summary picture
PICTURE_FRAMES = 4
#: values a median keeps in memory at once (float64: 32 MB); more take extra passes over the frames
MEDIAN_MAX_KEEP = 1 << 22

DEPTH_DEFINITION = ("pixels whose ground truth is finite and > 0 and whose prediction is finite, at the ground "
                    "truth's resolution (no confidence mask); pooled over the sequence: abs_rel = mean |d - d*| / d*, "
                    "sq_rel = mean (d - d*)^2 / d* [m], rmse [m], delta_k = fraction with max(d/d*, d*/d) < 1.25^k")
MEDIAN_SCALING = ("median scaling per sequence: depth x s, s = median(gt / pred) over all valid pixels of the "
                  "sequence (one s per world segment when the stream reset)")
AUC_DEFINITION = ("relative pose of camera j in camera i (c2w_i^-1 c2w_j) for every pair of evaluated frames less "
                  "than `window` input frames apart; error = max(rotation angle of R_gt^T R_est, angle between the "
                  "translation directions as lines [0-90 deg]); auc_T = mean over t = 1..T deg of the fraction of "
                  "pairs with error < t (the VGGT / DA3 pose benchmark); scale-free, no alignment")
RPE_DEFINITION = ("consecutive evaluated frames: E = (gt_i^-1 gt_j)^-1 (est_i^-1 est_j), translation norm [m] and "
                  "rotation angle [deg], estimate at the ATE alignment's scale")


@dataclass
class AnsweredFrame:
    """One frame the stream answered, as the evaluation needs it."""

    frame: int  # input order (Frame.index)
    source_index: Optional[int]  # the layout's key (SourceFrame.index)
    stamp: float  # seconds
    c2w: np.ndarray  # (4,4) in the stream's world
    segment: int  # world segment: +1 at each stream reset
    depth_file: Optional[Path]  # the predicted depth (.npy, world units)


@dataclass
class Evaluation:
    summary: dict  # the `evaluation` block of summary.json
    rows: List[dict]  # per answered frame
    samples: List[dict]  # picture frames: frame, image, pred, gt (metres)
    est_xy: List[np.ndarray]  # aligned estimated centres per segment, top view (N,2)
    gt_xy: List[np.ndarray]  # ground-truth centres per segment, same plane
    plane: str  # axis names of the top view


def evaluate(answered: Sequence[AnsweredFrame], gt: GroundTruth, metric: bool, window: int,
             max_dt: float = ASSOCIATION_MAX_DT, image_of: Optional[Callable[[int], np.ndarray]] = None,
             frames_in: Optional[int] = None) -> Evaluation:
    """Depth and pose metrics of `answered` against `gt` (module doc).
    `image_of(source_index)` gives an input image for the picture."""
    rows = {a.frame: _row(a) for a in answered}
    depth, samples = _evaluate_depth(answered, gt, metric, rows, image_of)
    pose, est_xy, gt_xy, plane = _evaluate_poses(answered, gt, metric, window, max_dt, rows)
    counts = {"input": frames_in, "answered": len(answered),
              "depth_evaluated": depth.pop("_frames_evaluated", 0),
              "depth_skipped": depth.pop("_skipped", {}),
              "pose_evaluated": pose.pop("_frames_evaluated", 0),
              "pose_unassociated": pose.pop("_unassociated", 0)}
    summary = {"layout": gt.layout, "ground_truth": dict(gt.info), "frames": counts,
               "model_depth": "metres (metric model)" if metric else "relative (world units)",
               "depth": depth, "pose": pose}
    return Evaluation(summary, [rows[a.frame] for a in answered], samples, est_xy, gt_xy, plane)


def _row(a: AnsweredFrame) -> dict:
    return {"frame": a.frame, "source_index": a.source_index, "stamp": a.stamp, "segment": a.segment,
            "depth_status": "", "depth_pixels": 0, "abs_rel": math.nan, "delta1": math.nan, "rmse_m": math.nan,
            "depth_scale": math.nan, "pose_gt": 0, "ate_error_m": math.nan}


# ---------------------------------------------------------------- depth


def _depth_frames(answered: Sequence[AnsweredFrame], gt: GroundTruth, rows: Dict[int, dict]) -> List[AnsweredFrame]:
    """The answered frames with a ground-truth depth file and a stored prediction; the others' reason is noted."""
    out = []
    for a in answered:
        if a.source_index is None or a.source_index >= len(gt.depth_files) or gt.depth_files[a.source_index] is None:
            rows[a.frame]["depth_status"] = "no_depth_gt"
        elif a.depth_file is None:
            rows[a.frame]["depth_status"] = "no_prediction_stored"
        else:
            out.append(a)
    return out


def _load_pair(a: AnsweredFrame, gt: GroundTruth) -> Tuple[np.ndarray, np.ndarray]:
    """(prediction at the ground truth's resolution, ground truth), metres / world units."""
    g = gt.depth(a.source_index)
    p = np.load(a.depth_file)
    return depth_at_resolution(p, *g.shape), g


def _evaluate_depth(answered, gt: GroundTruth, metric: bool, rows: Dict[int, dict],
                    image_of: Optional[Callable[[int], np.ndarray]]) -> Tuple[dict, List[dict]]:
    if not gt.has_depth:
        return {"error": "the layout has no ground-truth depth", "_skipped": {}}, []
    frames = _depth_frames(answered, gt, rows)
    skipped = {"no_depth_gt": sum(r["depth_status"] == "no_depth_gt" for r in rows.values()),
               "unreadable": 0, "no_valid_pixels": 0}
    # passes over the data until every median is known (bounded memory: geometry.metrics.StreamingMedian)
    segments = sorted({a.segment for a in frames})
    ratio_median = {s: StreamingMedian(MEDIAN_MAX_KEEP) for s in segments}
    gt_median = StreamingMedian(MEDIAN_MAX_KEEP)  # for the constant-depth reference
    usable: List[AnsweredFrame] = []
    first = True
    while True:
        for a in (frames if first else usable):
            try:
                p, g = _load_pair(a, gt)
            except (GroundTruthError, OSError, ValueError) as exc:
                if not first:  # every pass must see the same data
                    raise RuntimeError(f"depth of frame {a.frame} became unreadable during the evaluation: {exc}") from exc
                rows[a.frame]["depth_status"] = f"unreadable: {exc}"[:200]
                skipped["unreadable"] += 1
                continue
            ok = depth_valid_mask(p, g)
            if first:
                if not ok.any():
                    rows[a.frame]["depth_status"] = "no_valid_pixels"
                    skipped["no_valid_pixels"] += 1
                    continue
                usable.append(a)
            pos = ok & (p > 0)
            ratio_median[a.segment].feed(g[pos].astype(np.float64) / p[pos])
            gt_median.feed(g[ok])
        first = False
        done = [m.end_pass() for m in ratio_median.values()] + [gt_median.end_pass()]
        if all(done):
            break
    if not usable:
        return {"error": "no answered frame had readable ground-truth depth with valid pixels", "_skipped": skipped,
                "_frames_evaluated": 0}, []
    scales = {s: m.value for s, m in ratio_median.items()}
    constant = gt_median.value

    main, unscaled, reference = DepthErrorSums(), DepthErrorSums(), DepthErrorSums()
    show = set(int(round(j)) for j in np.linspace(0, len(usable) - 1, min(PICTURE_FRAMES, len(usable))))
    samples = []
    for k, a in enumerate(usable):
        p, g = _load_pair(a, gt)
        ok = depth_valid_mask(p, g)
        s = scales[a.segment]
        pv, gv = p[ok].astype(np.float64), g[ok].astype(np.float64)
        if metric:
            r = unscaled.add(pv, gv)
            main.add(pv * s, gv)
        else:
            r = main.add(pv * s, gv)
        reference.add(np.full(len(gv), constant), gv)
        rows[a.frame].update(depth_status="evaluated", depth_pixels=r.n_pixels, abs_rel=r.abs_rel,
                             delta1=r.delta1, rmse_m=r.rmse, depth_scale=1.0 if metric else s)
        if k in show:
            image = None
            if image_of is not None and a.source_index is not None:
                try:
                    image = image_of(a.source_index)
                except (OSError, ValueError):
                    image = None
            samples.append({"frame": a.frame, "image": image, "gt": g,
                            "pred": np.where(np.isfinite(p), p * (1.0 if metric else s), np.nan).astype(np.float32)})
    evaluated = sum(r["depth_status"] == "evaluated" for r in rows.values())
    out = {}
    if metric:
        out.update(alignment="none (metric model, metres as predicted)", **_named(unscaled.result()))
        out["median_scaled"] = dict(alignment=MEDIAN_SCALING, scale=_one(scales), **_named(main.result()))
    else:
        out.update(alignment=MEDIAN_SCALING, scale=_one(scales), **_named(main.result()))
    if len(scales) > 1:
        out["scale_per_segment"] = {str(s): v for s, v in scales.items()}
    out["frames"] = evaluated
    out["constant_depth_reference"] = dict(
        note="every pixel predicted at the sequence's median ground-truth depth: a model should beat this",
        depth_m=constant, **{k: v for k, v in _named(reference.result()).items() if k in ("abs_rel", "delta1")})
    out["definition"] = DEPTH_DEFINITION
    out["_skipped"] = skipped
    out["_frames_evaluated"] = evaluated
    return out, samples


def _named(r) -> dict:
    d = r.as_dict()
    return {"abs_rel": d["abs_rel"], "sq_rel_m": d["sq_rel"], "rmse_m": d["rmse"], "delta1": d["delta1"],
            "delta2": d["delta2"], "delta3": d["delta3"], "pixels": d["n_pixels"]}


def _one(scales: Dict[int, float]):
    return next(iter(scales.values())) if len(scales) == 1 else None


# ---------------------------------------------------------------- poses


def _evaluate_poses(answered, gt: GroundTruth, metric: bool, window: int, max_dt: float, rows: Dict[int, dict]):
    empty = ([], [], "")
    if gt.trajectory is None:
        return {"error": "the layout has no ground-truth poses"}, *empty
    gt_stamps, gt_c2w = gt.trajectory
    ia, ib = associate([a.stamp for a in answered], gt_stamps, max_dt)
    gt_of = {int(i): gt_c2w[j] for i, j in zip(ia, ib)}
    for i in gt_of:
        rows[answered[i].frame]["pose_gt"] = 1
    out: dict = {"_frames_evaluated": len(gt_of), "_unassociated": len(answered) - len(gt_of),
                 "association_max_dt_s": max_dt}
    segs: Dict[int, List[int]] = {}
    for i in sorted(gt_of):
        segs.setdefault(answered[i].segment, []).append(i)
    ate_err, ate_still, rpe_t, rpe_r, auc_rot, auc_trans = [], [], [], [], [], []
    scales, aligns, est_c, gt_c = {}, set(), [], []
    for seg, idx in segs.items():
        if len(idx) < 3:
            continue
        est = np.stack([answered[i].c2w for i in idx])
        ref = np.stack([gt_of[i] for i in idx])
        moving = np.ptp(ref[:, :3, 3], axis=0).max() > 1e-6
        align = "se3" if metric or not moving else "sim3"
        try:
            a = ate(est, ref, align)
        except DegenerateAlignment:
            continue
        aligns.add(align)
        scales[seg] = a.alignment.scale
        ate_err.append(a.errors)
        centres = ref[:, :3, 3]
        ate_still.append(np.linalg.norm(centres - centres.mean(0), axis=1))
        for i, e in zip(idx, a.errors):
            rows[answered[i].frame]["ate_error_m"] = float(e)
        r = rpe(est, ref, 1, scale=a.alignment.scale)
        rpe_t.append(r.trans_errors)
        rpe_r.append(r.rot_errors_deg)
        pi, pj = window_pairs([answered[i].frame for i in idx], window)
        re, te = relative_pose_errors(est, ref, pi, pj)
        auc_rot.append(re)
        auc_trans.append(te)
        est_c.append(a.alignment.apply_c2w(est)[:, :3, 3])
        gt_c.append(centres)
    if not ate_err:
        out["error"] = f"fewer than 3 answered frames matched a ground-truth pose within {max_dt} s"
        return out, *empty
    e = np.concatenate(ate_err)
    still = np.concatenate(ate_still)
    rt, rr = np.concatenate(rpe_t), np.concatenate(rpe_r)
    re, te = np.concatenate(auc_rot), np.concatenate(auc_trans)
    align = "sim3" if aligns == {"sim3"} else ("se3" if aligns == {"se3"} else "mixed")
    out.update({
        "alignment": {"sim3": "Sim(3) Umeyama (relative model)", "se3": "SE(3) Umeyama (metric model or a camera "
                      "that does not move)", "mixed": "Sim(3) per moving segment, SE(3) per static one"}[align],
        "frames": int(len(e)),
        "ate_rmse_m": float(np.sqrt(np.mean(e**2))), "ate_mean_m": float(np.mean(e)), "ate_max_m": float(np.max(e)),
        "scale_to_gt": _one(scales),
        "ate_standing_still_m": float(np.sqrt(np.mean(still**2))),
        "rpe_trans_rmse_m": _rms(rt), "rpe_rot_rmse_deg": _rms(rr), "rpe_pairs": int(len(rt)),
        "rpe_definition": RPE_DEFINITION,
        "auc": {f"auc{t}": pose_auc(re, te, t) for t in AUC_THRESHOLDS_DEG},
    })
    out["auc"].update(pairs=int(len(re)), window=int(window), rot_err_median_deg=_median(re),
                      trans_dir_err_median_deg=_median(te), definition=AUC_DEFINITION)
    if len(scales) > 1:
        out["scale_per_segment"] = {str(s): v for s, v in scales.items()}
    out["standing_still_note"] = "ATE of a camera that never moves (RMS distance of the ground-truth centres from their mean)"
    est_xy, gt_xy, plane = _top_view(est_c, gt_c)
    return out, est_xy, gt_xy, plane


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else math.nan


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else math.nan


def _top_view(est: List[np.ndarray], ref: List[np.ndarray]):
    """Project onto the plane of the ground truth's two largest spreads (the
    floor plane of a hand-held or wheeled camera)."""
    allc = np.concatenate(ref)
    mu = allc.mean(0)
    _, _, Vt = np.linalg.svd(allc - mu, full_matrices=False)
    axes = Vt[:2]
    return [(e - mu) @ axes.T for e in est], [(g - mu) @ axes.T for g in ref], \
        "plane of the ground truth's two largest spreads"


# ---------------------------------------------------------------- outputs

CSV_COLUMNS = ("frame", "source_index", "stamp", "segment", "depth_status", "depth_pixels", "abs_rel", "delta1",
               "rmse_m", "depth_scale", "pose_gt", "ate_error_m")


def write_rows_csv(path: Path, rows: Sequence[dict]) -> None:
    """Per answered frame: its depth metrics at the sequence's scale and its
    ATE error after the alignment (empty where not evaluated); stamps in seconds."""

    def cell(column: str, v) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        if column == "stamp":
            return f"{v:.6f}"
        return f"{v:.9g}" if isinstance(v, float) else str(v)

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([cell(c, r[c]) for c in CSV_COLUMNS])


def headline(ev: dict) -> List[str]:
    """Printable lines of the main numbers."""
    lines = []
    d, p = ev.get("depth", {}), ev.get("pose", {})
    if "abs_rel" in d:
        how = "unscaled, metres" if d["alignment"].startswith("none") else f"median-scaled x{d['scale']:.4g}" \
            if d.get("scale") is not None else "median-scaled per segment"
        lines.append(f"  depth ({d['frames']} frames, {d['pixels']} px, {how}): AbsRel {d['abs_rel']:.4f}, "
                     f"SqRel {d['sq_rel_m']:.4f}, RMSE {d['rmse_m']:.4f} m, d1 {d['delta1']:.4f}, d2 {d['delta2']:.4f}, "
                     f"d3 {d['delta3']:.4f} (a constant depth: AbsRel {d['constant_depth_reference']['abs_rel']:.4f})")
        if "median_scaled" in d:
            m = d["median_scaled"]
            lines.append(f"  depth median-scaled (x{m['scale']:.4g}): AbsRel {m['abs_rel']:.4f}, d1 {m['delta1']:.4f}")
    elif "error" in d:
        lines.append(f"  depth: {d['error']}")
    if "ate_rmse_m" in p:
        lines.append(f"  poses ({p['frames']} frames, {p['alignment'].split(' ')[0]}): ATE {p['ate_rmse_m']:.4f} m "
                     f"(standing still: {p['ate_standing_still_m']:.4f} m), RPE {p['rpe_trans_rmse_m']:.4f} m / "
                     f"{p['rpe_rot_rmse_deg']:.3f} deg, AUC@3 {p['auc']['auc3']:.3f}, AUC@30 {p['auc']['auc30']:.3f} "
                     f"({p['auc']['pairs']} pairs)")
    elif "error" in p:
        lines.append(f"  poses: {p['error']}")
    f = ev.get("frames", {})
    sk = f.get("depth_skipped", {})
    if any(sk.values()) or f.get("pose_unassociated"):
        lines.append(f"  skipped: depth {dict(sk)}, poses without ground truth {f.get('pose_unassociated', 0)}")
    return lines


__all__ = ["AnsweredFrame", "Evaluation", "evaluate", "write_rows_csv", "headline", "CSV_COLUMNS"]
