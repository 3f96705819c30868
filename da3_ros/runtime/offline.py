"""`da3_ros run-offline`: the streaming pipeline (da3_ros.stream.pipeline.Streamer,
the core the node and process-bag feed) on an image folder, a dataset layout
(TUM RGB-D, 7-Scenes), a video or a rosbag2, no ROS. Writes per-frame depth
(16-bit PNG in mm and float .npy), confidence, the world map (PLY), the
trajectory (TUM), intrinsics (JSON) and a summary (JSON); where the input has
ground truth (depth and/or poses, see da3_ros.io.datasets) or --gt names a TUM
trajectory, the evaluation too (summary.json "evaluation", frames.csv,
summary.png; da3_ros.runtime.evaluation).

    da3_ros run-offline --input rgbd_dataset_freiburg1_xyz/ --out run/
    da3_ros run-offline --input frames/ --model depth-anything/DA3-SMALL --out run/ --gt trajectory.txt
    da3_ros run-offline --input seq/ --model oracle:seq/ --out run/
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from ..io.datasets import ASSOCIATION_MAX_DT, TUM_INTRINSICS_CHOICES
from ..stream.config import StreamConfig
from ..stream.interface import Frame
from ..usage import ArgumentParser, UsageError, camera_names, int_range, one_line_errors, output_directory
from ..weights import EMBEDDED_PROCESS_RES, EMBEDDED_VARIANT
from .models import ORACLE_KINDS, PROCESS_RES_RANGE, ModelSettings


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="da3_ros run-offline", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="image folder, TUM RGB-D or 7-Scenes sequence folder, video file "
                   "or rosbag2 (directory, .mcap, .db3)")
    p.add_argument("--model", default="default",
                   help="default (the node's: hub DA3-SMALL when cached or reachable, else the embedded da3-tiny), "
                        "a DA3 checkpoint (hub id, directory, .safetensors, random:<variant>) or oracle:<synthetic dir>")
    p.add_argument("--out", required=True, help="output folder: new or empty (see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (files of the same name "
                   "are replaced)")
    p.add_argument("--gt", default="auto",
                   help="ground truth to evaluate against: auto (what the input layout has: depth, poses), none, "
                        "or a TUM trajectory file (poses; depth still from the layout)")
    p.add_argument("--max-dt", type=float, default=ASSOCIATION_MAX_DT,
                   help="seconds within which a ground-truth depth image / pose belongs to a frame")
    p.add_argument("--tum-intrinsics", default="auto", choices=TUM_INTRINSICS_CHOICES,
                   help="TUM RGB-D input: published calibration fr1/fr2/fr3; auto: intrinsics.json in the folder, "
                        "else the camera the folder name says (rgbd_dataset_freiburg1_...); none: estimated")
    p.add_argument("--window", type=int, default=8, help="frames per window")
    p.add_argument("--stride", type=int, default=1, help="new frames per inference")
    p.add_argument("--process-res", type=int_range(*PROCESS_RES_RANGE, "pixels"), default=None,
                   help="network input size (longest side, pixels; rounded to a multiple of 14); default: the "
                        f"checkpoint's own (DA3: 504, the embedded da3-tiny: {EMBEDDED_PROCESS_RES}, its only size)")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--model-variant", default=None, help="variant name for a bare .safetensors file")
    p.add_argument("--pose-source", default=ModelSettings.pose_source, choices=["ray", "camera"],
                   help="the node's pose_source: ray head + solver (more accurate) or camera head (much cheaper on a CPU)")
    p.add_argument("--image-topic", action="append", default=[],
                   help="rosbag2 image topic (default: the only image topic); with --cameras one per camera, in order "
                        "(default: the topic named by each camera)")
    p.add_argument("--cameras", type=camera_names, default=[],
                   help="a rig bag: camera names, e.g. left,right: their images are grouped into rig frames and run "
                        "as one window (as da3_node does with its `cameras` parameter); no evaluation")
    p.add_argument("--base-frame", default="",
                   help="with --cameras: the rig's base frame in the bag's /tf_static (base -> each optical frame): "
                        "the baselines make the output metric")
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
    p.add_argument("--no-picture", action="store_true", help="skip summary.png of the evaluation")
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


def check_args(args: argparse.Namespace) -> None:
    """What can be refused before any work: one line each (UsageError)."""
    output_directory(args.out, args.overwrite)
    if args.base_frame and not args.cameras:
        raise UsageError(f"--base-frame {args.base_frame!r} applies to a rig bag only: give --cameras too "
                         "(a single camera's poses are its optical frame's)")
    kind, sep, _ = args.model.partition(":")
    if args.process_res is not None and sep and kind in ORACLE_KINDS:
        raise UsageError(f"--process-res {args.process_res} does not apply to --model {kind}:<dir> (the oracle "
                         "answers at the input's resolution): leave it out")


def load_model(args: argparse.Namespace):
    """The model --model names, or UsageError with the loader's reason (one line)."""
    from .models import ModelUnavailable, make_window_model

    settings = ModelSettings(model=args.model, model_variant=args.model_variant or "", device=args.device,
                             precision=args.precision, process_res=args.process_res, pose_source=args.pose_source)
    try:
        return make_window_model(settings)
    except (ModelUnavailable, ValueError) as exc:  # incl. SettingRefused
        raise UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any loader failure, in one line
        what = "" if type(exc).__name__ == "DA3LoadError" else f"{type(exc).__name__}: "
        raise UsageError(f"cannot load model {args.model!r}: {what}{exc}") from None


@one_line_errors("run-offline")
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from ..io import datasets, writers
    from ..io.sources import open_source
    from ..stream.pipeline import ModelOutputError, Streamer
    from . import evaluation

    check_args(args)
    cameras = args.cameras
    if cameras:
        return run_rig(args, cameras)
    if len(args.image_topic) > 1:
        print("run-offline: several --image-topic need --cameras (one camera name per topic)", file=sys.stderr)
        return 2
    try:
        source = open_source(args.input, image_topic=(args.image_topic or [None])[0],
                             camera_info_topic=args.camera_info_topic,
                             max_frames=args.max_frames, rectified=args.rectified, max_dt=args.max_dt,
                             tum_intrinsics=args.tum_intrinsics)
        gt = None if args.gt == "none" else source.ground_truth
        if args.gt not in ("auto", "none"):
            gt = (gt or datasets.GroundTruth("trajectory", [])).with_trajectory(args.gt)
    except (ValueError, OSError) as exc:  # SourceError, GroundTruthError
        print(f"run-offline: cannot open input: {exc}", file=sys.stderr)
        return 2
    model = load_model(args)
    print(f"run-offline: input {source.kind} {args.input} ({datasets.describe(gt)})", file=sys.stderr, flush=True)
    model_name = getattr(model, "name", args.model)
    print(f"run-offline: model {model_name}", file=sys.stderr, flush=True)
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
    # the evaluation reads the predicted depth back (several passes, bounded memory)
    eval_depth_dir = None
    if gt is not None and gt.has_depth and args.no_frames:
        eval_depth_dir = Path(tempfile.mkdtemp(prefix=".eval_depth_", dir=out))
    try:  # the evaluation's copy of the predictions goes, whatever happens
        try:
            total = len(source)
        except TypeError:
            total = None
        progress = Progress(total, not args.quiet)
        stamps: List[float] = []
        poses: List[np.ndarray] = []
        answered: List[evaluation.AnsweredFrame] = []
        statuses: Counter = Counter()
        keyframes = rejected = resets = failed_windows = 0
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
                name = f"{r.index:06d}"
                depth_file = None
                if not args.no_frames:
                    depth_file = out / "depth" / f"{name}.npy"
                    np.save(depth_file, r.depth)
                    writers.write_depth_png_mm(out / "depth" / f"{name}.png", r.depth)
                    np.save(out / "confidence" / f"{name}.npy", r.confidence)
                elif eval_depth_dir is not None:
                    depth_file = eval_depth_dir / f"{name}.npy"
                    np.save(depth_file, r.depth)
                answered.append(evaluation.AnsweredFrame(frame=r.index, source_index=r.meta,
                                                         stamp=r.stamp, c2w=r.c2w, segment=resets, depth_file=depth_file))

        for sf in source:
            # meta: the source's own index of the frame (its ground truth's key), handed back in the result
            frame = Frame(index=n_in, stamp=float(sf.stamp), image=sf.image,
                          intrinsics=None if args.ignore_intrinsics else sf.intrinsics, meta=sf.index)
            n_in += 1
            try:
                handle(streamer.push(frame))
            except ValueError as exc:  # FrameError: skip the frame, keep going
                rejected += 1
                print(f"\nrun-offline: frame {frame.index} rejected: {exc}", file=sys.stderr)
            except ModelOutputError as exc:  # the window's new frames are dropped, the stream goes on
                failed_windows += 1
                print(f"\nrun-offline: window with frame {frame.index} dropped: {exc}", file=sys.stderr)
            progress.update(n_in, len(answered))
        handle(streamer.flush())
        progress.update(n_in, len(answered), force=True)
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
        embedded = EMBEDDED_VARIANT in str(model_name)
        summary = {
            "input": str(args.input), "input_kind": source.kind, "model": model_name,
            "frames_in": n_in, "frames_answered": len(answered), "frames_rejected": rejected,
            "windows_failed": failed_windows, "keyframes": keyframes,
            "frames_dropped": {k: v for k, v in streamer.counts.items() if k.endswith(("_outlier", "_stamp"))},
            "resets": resets, "seconds": elapsed, "fps": n_in / elapsed if elapsed > 0 else None,
            "metric": bool(streamer.metric), "depth_unit": "metres" if streamer.metric else "world units (first window's scale)",
            "world": streamer.world_mode, "alignment": dict(statuses), "map_points": int(len(xyz)),
            "window": args.window, "stride": args.stride,
            "trajectory_note": "trajectory.tum holds the last world segment (since the last reset)" if resets else None,
        }
        if embedded:
            summary["model_note"] = EMBEDDED_NOTE
        lines = [f"run-offline: {n_in} frames in {elapsed:.1f} s ({summary['fps'] or 0:.1f} fps), {len(answered)} answered, "
                 f"{keyframes} keyframes, {rejected} rejected, {resets} resets",
                 f"  model: {model_name}",
                 f"  world: {summary['world']}, depth in {summary['depth_unit']}, map {len(xyz)} points, alignment {dict(statuses)}"]
        if gt is not None:
            ev = evaluation.evaluate(answered, gt, bool(streamer.metric), args.window, args.max_dt,
                                     image_of=_image_reader(source), frames_in=n_in)
            summary["evaluation"] = ev.summary
            evaluation.write_rows_csv(out / "frames.csv", ev.rows)
            lines += evaluation.headline(ev.summary)
            lines.append(f"  per-frame numbers: {out / 'frames.csv'}")
            if not args.no_picture:
                lines.append("  " + _draw(out / "summary.png", ev, model_name, source.kind, embedded, summary))
    finally:
        if eval_depth_dir is not None:
            shutil.rmtree(eval_depth_dir, ignore_errors=True)
    writers.write_json(out / "summary.json", summary)
    if embedded:
        lines.append(f"  note: {EMBEDDED_NOTE}")
    lines.append(f"  outputs in {out}")
    print("\n".join(lines))
    return 0 if answered or n_in == 0 else 1


def run_rig(args, cameras: List[str]) -> int:
    """run-offline on a rig bag: every camera's images grouped into rig frames by
    the node's RigSynchronizer and answered by one window (Streamer.push_rig);
    depth per camera, the rig's trajectory (its first camera) and calibration."""
    from ..io import bags, writers
    from ..io.sources import BagSource
    from ..stream.pipeline import Streamer
    from ..stream.rig import RigSynchronizer

    if not bags.is_bag_path(Path(args.input)):
        raise UsageError(f"--cameras takes a rosbag2 input (a folder with metadata.yaml, .mcap or .db3), "
                         f"not {args.input!r}")
    try:
        with bags.open_reader(args.input) as reader:
            images = [t.name for t in bags.list_topics(reader) if t.msgtype in bags.IMAGE_TYPES]
        topics = args.image_topic or bags.camera_image_topics(images, cameras)
        if len(topics) != len(cameras):
            raise ValueError(f"{len(topics)} image topics for {len(cameras)} cameras")
        sources = {c: BagSource(args.input, t, None, args.max_frames, rectified=args.rectified)
                   for c, t in zip(cameras, topics)}
        static = bags.static_transforms(args.input) if args.base_frame else {}
    except (bags.BagError, ValueError, OSError) as exc:
        raise UsageError(f"cannot open the rig's topics ({', '.join(cameras)}): {exc}") from None
    if args.base_frame and not any(parent == args.base_frame for parent, _ in static):
        have = sorted(f"{parent} -> {child}" for parent, child in static) or ["nothing"]
        raise UsageError(f"--base-frame {args.base_frame!r} is not a parent in the bag's /tf_static (it has "
                         f"{', '.join(have[:6])}): give the rig's base frame, or leave --base-frame out")
    model = load_model(args)
    print(f"run-offline: rig {', '.join(f'{c} <- {t}' for c, t in zip(cameras, topics))}; model {model.name}",
          file=sys.stderr, flush=True)
    streamer = Streamer(model, StreamConfig(window_size=args.window, stride=args.stride, rig_cameras=tuple(cameras),
                                            min_confidence=args.min_confidence, depth_range=(args.min_depth, args.max_depth),
                                            map_voxel_size=args.voxel, map_max_points=args.max_map_points,
                                            trajectory_cap=1_000_000))
    sync = RigSynchronizer(cameras)
    out = Path(args.out)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    # every camera's frames in stamp order, as the node would receive them
    views = sorted(((float(sf.stamp), c, sf) for c, src in sources.items() for sf in src), key=lambda v: (v[0], v[1]))
    answered, t0 = 0, time.perf_counter()
    for stamp, camera, sf in views:
        for rig_frame in sync.push(camera, stamp, sf):
            frames = []
            for k, (c, view) in enumerate(rig_frame.views.items()):
                T = static.get((args.base_frame, view.data.frame_id)) if args.base_frame else None
                if args.base_frame and T is None:
                    raise UsageError(f"--base-frame {args.base_frame!r}: the bag's /tf_static has no transform "
                                     f"{args.base_frame} -> {view.data.frame_id} (camera {c})")
                frames.append(Frame(index=answered + k, stamp=view.stamp, image=view.data.image, camera=c,
                                    intrinsics=None if args.ignore_intrinsics else view.data.intrinsics,
                                    T_base_optical=T, meta=c))
            for r in streamer.push_rig(frames):
                answered += 1
                if not args.no_frames:
                    writers.write_depth_png_mm(out / "depth" / f"{r.meta}_{r.index:06d}.png", r.depth)
    elapsed = time.perf_counter() - t0
    trajectory = streamer.trajectory()
    writers.write_tum(out / "trajectory.tum", trajectory.stamps, trajectory.c2w)
    summary = {"input": str(args.input), "cameras": dict(zip(cameras, topics)), "model": model.name,
               "views_in": len(views), "views_answered": answered, "seconds": elapsed,
               "metric": bool(streamer.metric), "rig": {**sync.stats(), **streamer.rig_calibration()}}
    writers.write_json(out / "summary.json", summary)
    print(f"run-offline: {answered}/{len(views)} views answered in {elapsed:.1f} s; "
          f"{'metric (metres from the rig)' if streamer.metric else 'relative scale'}; outputs in {out}")
    if not streamer.metric:  # say why the rig did not fix the scale
        print(f"run-offline: rig scale {streamer.rig_state().state}: {streamer.rig_state().summary()}")
    return 0 if answered else 1


EMBEDDED_NOTE = ("the embedded da3-tiny was trained on the project's synthetic renders only: on real images its depth is "
                 "worse than a constant (see evaluation.depth.constant_depth_reference); real data needs the official "
                 "DA3 weights (--model depth-anything/DA3-SMALL once cached)")


def _image_reader(source):
    """source index -> RGB image, for sources that are image lists (folders, datasets)."""
    files = getattr(source, "files", None)
    if files is None:
        return None
    from ..io.sources import read_rgb

    return lambda i: read_rgb(files[i])


def _draw(path: Path, ev, model_name: str, kind: str, embedded: bool, summary: dict) -> str:
    from ..io import plots

    if not plots.available():
        return "summary.png skipped: matplotlib is not installed (pip install matplotlib)"
    d, p = ev.summary.get("depth", {}), ev.summary.get("pose", {})
    title = f"{model_name} on {summary['input']} ({kind}), {summary['frames_answered']}/{summary['frames_in']} frames answered"
    parts = []
    if "abs_rel" in d:
        how = "metres, unscaled" if d["alignment"].startswith("none") else "median-scaled"
        parts.append(f"depth ({how}) AbsRel {d['abs_rel']:.3f}, delta1 {d['delta1']:.3f} "
                     f"(a constant: {d['constant_depth_reference']['abs_rel']:.3f})")
    if "ate_rmse_m" in p:
        parts.append(f"ATE {p['ate_rmse_m']:.3f} m ({p['alignment'].split(' ')[0]}; standing still "
                     f"{p['ate_standing_still_m']:.3f} m), AUC@30 {p['auc']['auc30']:.3f}")
    if embedded:
        parts.append("embedded da3-tiny: synthetic-only weights")
    plots.evaluation_figure(path, ev.samples, ev.est_xy, ev.gt_xy, title + "\n" + "; ".join(parts), ev.plane)
    return f"picture: {path}"


if __name__ == "__main__":
    sys.exit(main())
