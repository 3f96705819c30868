"""`da3_ros run-offline`: the streaming pipeline on an image folder, a video or
a rosbag2, no ROS. Writes per-frame depth (16-bit PNG in mm and float .npy),
confidence, the world map (PLY), the trajectory (TUM), intrinsics (JSON) and a
summary (JSON); with --gt, ATE/RPE against a TUM ground truth.

    da3_ros run-offline --input frames/ --model depth-anything/DA3-SMALL --out run/
    da3_ros run-offline --input seq/ --model oracle:seq/ --out run/ --gt seq/groundtruth.txt
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..stream.config import StreamConfig
from ..stream.interface import Frame


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="da3_ros run-offline", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="image folder, video file or rosbag2 (directory, .mcap, .db3)")
    p.add_argument("--model", default="depth-anything/DA3-SMALL",
                   help="DA3 checkpoint (hub id, directory, .safetensors, random:<variant>) or oracle:<synthetic dir>")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--gt", help="ground-truth trajectory (TUM) for ATE/RPE in the summary")
    p.add_argument("--window", type=int, default=8, help="frames per window")
    p.add_argument("--stride", type=int, default=1, help="new frames per inference")
    p.add_argument("--process-res", type=int, default=None, help="network input size (longest side, pixels)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--model-variant", default=None, help="variant name for a bare .safetensors file")
    p.add_argument("--image-topic", default=None, help="rosbag2 image topic (default: the only image topic)")
    p.add_argument("--camera-info-topic", default=None, help="rosbag2 CameraInfo topic")
    p.add_argument("--rectified", action="store_true",
                   help="the bag's images are rectified (image_rect): intrinsics from CameraInfo's P, not K")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--ignore-intrinsics", action="store_true", help="estimate intrinsics even if the input has them")
    p.add_argument("--min-confidence", type=float, default=StreamConfig.min_confidence)
    p.add_argument("--min-depth", type=float, default=StreamConfig.depth_range[0], help="metres (world units if not metric)")
    p.add_argument("--max-depth", type=float, default=StreamConfig.depth_range[1], help="metres (world units if not metric)")
    p.add_argument("--voxel", type=float, default=StreamConfig.map_voxel_size, help="map voxel edge, metres (world units)")
    p.add_argument("--max-map-points", type=int, default=2_000_000)
    p.add_argument("--no-frames", action="store_true", help="skip per-frame depth/confidence files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


class Progress:
    """A plain stderr progress line (no tqdm)."""

    def __init__(self, total: Optional[int], enabled: bool, stream=None):
        self.total, self.enabled, self._stream = total, enabled, stream
        self.t0 = time.perf_counter()
        self._last = 0.0

    @property
    def stream(self):
        return self._stream if self._stream is not None else sys.stderr  # looked up late (redirection)

    def update(self, done: int, answered: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        fps = done / max(now - self.t0, 1e-9)
        if self.total:
            width = 30
            filled = int(width * min(done / self.total, 1.0))
            bar = f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}"
        else:
            bar = f"{done} frames"
        self.stream.write(f"\r{bar} answered {answered}  {fps:.1f} fps ")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_dt: float = 0.02):
    """Index pairs (i, j) with |a_i - b_j| <= max_dt, nearest first, one-to-one."""
    if len(stamps_a) == 0 or len(stamps_b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    order = np.argsort(stamps_b)
    sb = stamps_b[order]
    pos = np.clip(np.searchsorted(sb, stamps_a), 1, len(sb) - 1) if len(sb) > 1 else np.zeros(len(stamps_a), int)
    left = np.maximum(pos - 1, 0)
    pick = np.where(np.abs(sb[left] - stamps_a) <= np.abs(sb[pos] - stamps_a), left, pos)
    ok = np.abs(sb[pick] - stamps_a) <= max_dt
    ia, jb = np.nonzero(ok)[0], order[pick[ok]]
    _, first = np.unique(jb, return_index=True)  # one-to-one
    return ia[first], jb[first]


def evaluate(stamps: np.ndarray, c2w: np.ndarray, gt_path: str, metric: bool) -> dict:
    from ..geometry.metrics import ate, rpe
    from ..io.writers import read_tum

    gt_stamps, gt_c2w = read_tum(gt_path)
    ia, ib = associate(stamps, gt_stamps)
    out = {"gt": str(gt_path), "matched_poses": int(len(ia))}
    if len(ia) < 3:
        out["error"] = "fewer than 3 poses matched the ground truth by stamp"
        return out
    est, gt = c2w[ia], gt_c2w[ib]
    moving = np.ptp(gt[:, :3, 3], axis=0).max() > 1e-6
    align = "se3" if metric or not moving else "sim3"
    a = ate(est, gt, align)
    r = rpe(est, gt, 1, scale=a.alignment.scale)
    out.update({
        "alignment": align,
        "ate_rmse_m": a.rmse, "ate_mean_m": a.mean, "ate_max_m": a.max, "scale_to_gt": a.alignment.scale,
        "rpe_trans_rmse_m": r.trans_rmse, "rpe_rot_rmse_deg": r.rot_rmse_deg,
    })
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        from ..io.sources import open_source
        from ..io import writers
    except ImportError as exc:
        print(f"run-offline: the input/output layer (da3_ros.io) is not available: {exc}", file=sys.stderr)
        return 2
    from ..stream.pipeline import Streamer
    from .models import ModelSettings, ModelUnavailable, make_window_model

    try:
        source = open_source(args.input, image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                             max_frames=args.max_frames, rectified=args.rectified)
    except (ValueError, OSError) as exc:
        print(f"run-offline: cannot open input: {exc}", file=sys.stderr)
        return 2
    try:
        model = make_window_model(ModelSettings(model=args.model, model_variant=args.model_variant or "",
                                                device=args.device, precision=args.precision,
                                                process_res=args.process_res))
    except ModelUnavailable as exc:
        print(f"run-offline: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - any loader failure, in one line
        print(f"run-offline: cannot load model {args.model!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = StreamConfig(window_size=args.window, stride=args.stride, min_confidence=args.min_confidence,
                           depth_range=(args.min_depth, args.max_depth), map_voxel_size=args.voxel,
                           map_max_points=args.max_map_points, trajectory_cap=1_000_000)
    except ValueError as exc:
        print(f"run-offline: {exc}", file=sys.stderr)
        return 2
    streamer = Streamer(model, cfg)

    out = Path(args.out)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    (out / "confidence").mkdir(exist_ok=True)
    try:
        total = len(source)
    except TypeError:
        total = None
    progress = Progress(total, not args.quiet)
    stamps: List[float] = []
    poses: List[np.ndarray] = []
    statuses: Counter = Counter()
    keyframes = rejected = resets = 0
    last = None
    n_in = 0
    t0 = time.perf_counter()

    def handle(results) -> None:
        nonlocal keyframes, resets, last
        for r in results:
            if r.reset is not None:
                resets += 1
                stamps.clear()
                poses.clear()  # a new world: the old poses are in another frame
            stamps.append(r.stamp)
            poses.append(r.c2w)
            statuses[r.alignment] += 1
            keyframes += int(r.keyframe)
            last = r
            if not args.no_frames:
                name = f"{r.index:06d}"
                np.save(out / "depth" / f"{name}.npy", r.depth)
                writers.write_depth_png_mm(out / "depth" / f"{name}.png", r.depth)
                np.save(out / "confidence" / f"{name}.npy", r.confidence)

    for sf in source:
        frame = Frame(index=n_in, stamp=float(sf.stamp), image=sf.image,
                      intrinsics=None if args.ignore_intrinsics else sf.intrinsics)
        n_in += 1
        try:
            handle(streamer.push(frame))
        except ValueError as exc:  # FrameError: skip the frame, keep going
            rejected += 1
            print(f"\nrun-offline: frame {frame.index} rejected: {exc}", file=sys.stderr)
        progress.update(n_in, len(stamps))
    handle(streamer.flush())
    progress.update(n_in, len(stamps), force=True)
    progress.close()
    elapsed = time.perf_counter() - t0

    st = np.array(stamps, np.float64)
    c2w = np.array(poses, np.float64).reshape(-1, 4, 4)
    writers.write_tum(out / "trajectory.tum", st, c2w)
    xyz, rgb = streamer.map_points()
    writers.write_ply(out / "map.ply", xyz, rgb)
    if last is not None:
        writers.write_json(out / "intrinsics.json", {
            "K": last.intrinsics, "width": last.width, "height": last.height, "source": last.intrinsics_source})
    summary = {
        "input": str(args.input), "model": getattr(model, "name", args.model),
        "frames_in": n_in, "frames_answered": len(stamps), "frames_rejected": rejected, "keyframes": keyframes,
        "resets": resets, "seconds": elapsed, "fps": n_in / elapsed if elapsed > 0 else None,
        "metric": bool(streamer.metric), "depth_unit": "metres" if streamer.metric else "world units (first window's scale)",
        "world": streamer.world_mode, "alignment": dict(statuses), "map_points": int(len(xyz)),
        "window": args.window, "stride": args.stride,
    }
    if args.gt:
        summary["evaluation"] = evaluate(st, c2w, args.gt, streamer.metric)
    writers.write_json(out / "summary.json", summary)
    lines = [f"run-offline: {n_in} frames in {elapsed:.1f} s ({summary['fps'] or 0:.1f} fps), {len(stamps)} answered, "
             f"{keyframes} keyframes, {rejected} rejected, {resets} resets",
             f"  world: {summary['world']}, depth in {summary['depth_unit']}, map {len(xyz)} points, alignment {dict(statuses)}",
             f"  outputs in {out}"]
    ev = summary.get("evaluation")
    if ev and "ate_rmse_m" in ev:
        lines.append(f"  vs ground truth ({ev['matched_poses']} poses, {ev['alignment']}): ATE {ev['ate_rmse_m'] * 1000:.3f} mm rmse, "
                     f"RPE {ev['rpe_trans_rmse_m'] * 1000:.3f} mm / {ev['rpe_rot_rmse_deg']:.4f} deg per frame")
    elif ev:
        lines.append(f"  vs ground truth: {ev.get('error')}")
    print("\n".join(lines))
    return 0 if stamps or n_in == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
