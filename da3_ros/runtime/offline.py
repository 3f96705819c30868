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

Every setting of the node that is not about ROS I/O is a flag of the same name
and default (`--window-size` for `window_size`; da3_ros.stream.settings).
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
from ..stream.session import Session
from ..stream.settings import SETTINGS, Settings, default_value, flag, offline_names, parse_value, settings
from ..usage import ArgumentParser, UsageError, one_line_errors, output_directory
from ..weights import EMBEDDED_VARIANT
from .models import ORACLE_KINDS, model_settings


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="da3_ros run-offline", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="image folder, TUM RGB-D or 7-Scenes sequence folder, video file "
                   "or rosbag2 (directory, .mcap, .db3)")
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
    p.add_argument("--image-topic", action="append", default=[],
                   help="rosbag2 image topic (default: the only image topic); with --cameras one per camera, in order "
                        "(default: the topic named by each camera)")
    p.add_argument("--camera-info-topic", default=None, help="rosbag2 CameraInfo topic")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--no-frames", action="store_true", help="skip per-frame depth/confidence files")
    p.add_argument("--no-picture", action="store_true", help="skip summary.png of the evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_setting_flags(p)
    return p


def add_setting_flags(p: argparse.ArgumentParser) -> None:
    """One flag per setting that is not about ROS I/O: name, default, choices and
    meaning from the settings table (the node's parameters)."""
    group = p.add_argument_group("settings", "the node's parameters of the same names (da3_ros.stream.settings)")
    for name in offline_names():
        spec = SETTINGS[name]
        kw: dict = dict(dest=name, default=default_value(name), help=spec.description, type=_value_of(name))
        if spec.type is bool:  # --input-rectified, or --use-camera-info false
            kw.update(nargs="?", const=True, metavar="BOOL")
        elif spec.choices:
            kw.update(metavar="{" + ",".join(spec.choices) + "}")
        group.add_argument(flag(name), **kw)


def _value_of(name: str):
    def parse(text: str):
        try:
            return parse_value(name, text)
        except ValueError as exc:  # argparse: one usage line naming the value, exit 2
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def settings_of(args: argparse.Namespace) -> Settings:
    """The flags' settings, checked together, and what else can be refused before
    any work (the output folder): UsageError, one line."""
    output_directory(args.out, args.overwrite)
    try:
        cfg = settings(**{name: getattr(args, name) for name in offline_names()})
        StreamConfig.from_settings(cfg)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if cfg.base_frame and not cfg.cameras:
        raise UsageError(f"--base-frame {cfg.base_frame!r} applies to a rig bag only: give --cameras too "
                         "(a single camera's poses are its optical frame's)")
    kind, sep, _ = cfg.model.partition(":")
    if cfg.process_res != SETTINGS["process_res"].default and sep and kind in ORACLE_KINDS:
        raise UsageError(f"--process-res {cfg.process_res} does not apply to --model {kind}:<dir> (the oracle "
                         "answers at the input's resolution): leave it out")
    return cfg


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


@one_line_errors("run-offline")
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    cfg = settings_of(args)
    if cfg.cameras:
        return run_rig(args, cfg)
    if len(args.image_topic) > 1:
        raise UsageError("several --image-topic need --cameras (one camera name per topic)")
    source, gt = _open_input(args, cfg)
    model = _load_model(cfg)  # a model it cannot load is the one line a user sees
    from ..io import datasets

    print(f"run-offline: input {source.kind} {args.input} ({datasets.describe(gt)})", file=sys.stderr, flush=True)
    print(f"run-offline: model {getattr(model, 'name', cfg.model)}", file=sys.stderr, flush=True)
    return _run(args, cfg, source, gt, model)


def _open_input(args, cfg: Settings):
    """(source, ground truth or None); UsageError when the input cannot be opened."""
    from ..io import datasets
    from ..io.inputs import open_source

    try:
        source = open_source(args.input, image_topic=(args.image_topic or [None])[0],
                             camera_info_topic=args.camera_info_topic, max_frames=args.max_frames,
                             rectified=cfg.input_rectified, max_dt=args.max_dt, tum_intrinsics=args.tum_intrinsics)
        gt = None if args.gt == "none" else source.ground_truth
        if args.gt not in ("auto", "none"):
            gt = (gt or datasets.GroundTruth("trajectory", [])).with_trajectory(args.gt)
    except (ValueError, OSError) as exc:  # SourceError, GroundTruthError
        raise UsageError(f"cannot open input: {exc}") from None
    return source, gt


def _load_model(cfg: Settings):
    """The model the settings name, or UsageError with the loader's reason (one line)."""
    from .models import ModelUnavailable, make_window_model

    try:
        model = make_window_model(model_settings(cfg))
    except (ModelUnavailable, ValueError) as exc:  # incl. SettingRefused
        raise UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any loader failure, in one line
        what = "" if type(exc).__name__ == "DA3LoadError" else f"{type(exc).__name__}: "
        raise UsageError(f"cannot load model {cfg.model!r}: {what}{exc}") from None
    return model


def _warn(text: str) -> None:
    print(f"\nrun-offline: {text}", file=sys.stderr)


class _Answers:
    """What run-offline keeps of the answered frames: files and the evaluation's
    records (the trajectory is the world's: Streamer.trajectory)."""

    def __init__(self, out: Path, write_frames: bool, eval_depth_dir: Optional[Path]):
        from . import evaluation

        self._evaluation = evaluation
        self.out, self.write_frames, self.eval_depth_dir = out, write_frames, eval_depth_dir
        self.answered: list = []
        self.statuses: Counter = Counter()
        self.keyframes = self.resets = 0
        self.last = None

    def take(self, results) -> None:
        for r in results:
            if r.reset is not None:
                self.resets += 1
            self.statuses[r.alignment] += 1
            self.keyframes += int(r.keyframe)
            self.last = r
            self.answered.append(self._evaluation.AnsweredFrame(
                frame=r.index, source_index=r.meta, stamp=r.stamp, c2w=r.c2w, segment=self.resets,
                depth_file=self._write(r)))

    def _write(self, r) -> Optional[Path]:
        from ..io import writers

        name = f"{r.index:06d}"
        if self.write_frames:
            np.save(self.out / "depth" / f"{name}.npy", r.depth)
            writers.write_depth_png_mm(self.out / "depth" / f"{name}.png", r.depth)
            np.save(self.out / "confidence" / f"{name}.npy", r.confidence)
            return self.out / "depth" / f"{name}.npy"
        if self.eval_depth_dir is not None:
            np.save(self.eval_depth_dir / f"{name}.npy", r.depth)
            return self.eval_depth_dir / f"{name}.npy"
        return None


def _stream(args, cfg: Settings, source, session: Session, answers: _Answers) -> int:
    """Every frame of the source through the session; returns the frames read."""
    try:
        total = len(source)
    except TypeError:
        total = None
    progress = Progress(total, not args.quiet)
    n_in = 0
    for sf in source:
        # meta: the source's own index of the frame (its ground truth's key), handed back in the result
        answers.take(session.push(Frame(index=n_in, stamp=float(sf.stamp), image=sf.image, meta=sf.index,
                                        intrinsics=sf.intrinsics if cfg.use_camera_info else None)))
        n_in += 1
        progress.update(n_in, len(answers.answered))
    answers.take(session.flush())
    progress.update(n_in, len(answers.answered), force=True)
    progress.close()
    return n_in


def _run(args, cfg: Settings, source, gt, model) -> int:
    from ..io import writers

    session = Session(model, StreamConfig.from_settings(cfg), warn=_warn)
    out = Path(args.out)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    (out / "confidence").mkdir(exist_ok=True)
    # the evaluation reads the predicted depth back (several passes, bounded memory)
    eval_depth_dir = None
    if gt is not None and gt.has_depth and args.no_frames:
        eval_depth_dir = Path(tempfile.mkdtemp(prefix=".eval_depth_", dir=out))
    try:  # the evaluation's copy of the predictions goes, whatever happens
        answers = _Answers(out, not args.no_frames, eval_depth_dir)
        t0 = time.perf_counter()
        n_in = _stream(args, cfg, source, session, answers)
        elapsed = time.perf_counter() - t0
        summary, lines = _write_results(args, cfg, session, answers, out, n_in, elapsed, source)
        if gt is not None:
            lines += _evaluate(args, cfg, session, answers, gt, source, n_in, out, summary)
    finally:
        if eval_depth_dir is not None:
            shutil.rmtree(eval_depth_dir, ignore_errors=True)
    writers.write_json(out / "summary.json", summary)
    if "model_note" in summary:
        lines.append(f"  note: {EMBEDDED_NOTE}")
    lines.append(f"  outputs in {out}")
    print("\n".join(lines))
    return 0 if answers.answered or n_in == 0 else 1


def _write_results(args, cfg: Settings, session: Session, answers: _Answers, out: Path, n_in: int, elapsed: float,
                   source):
    """trajectory.tum, map.ply, intrinsics.json; -> (summary, printed lines)."""
    from ..io import writers

    streamer = session.streamer
    trajectory = streamer.trajectory()  # the world's one trajectory: its last segment, path_max_length poses
    writers.write_tum(out / "trajectory.tum", trajectory.stamps, trajectory.c2w)
    xyz, rgb = streamer.map_points()
    writers.write_ply(out / "map.ply", xyz, rgb)
    last = answers.last
    if last is not None:
        writers.write_json(out / "intrinsics.json", {
            "K": last.intrinsics, "width": last.width, "height": last.height, "source": last.intrinsics_source})
    model_name = streamer.model.name
    n_answered, resets, statuses = len(answers.answered), answers.resets, dict(answers.statuses)
    summary = {
        "input": str(args.input), "input_kind": source.kind, "model": model_name,
        "frames_in": n_in, "frames_answered": n_answered, "frames_rejected": session.counts["frames_rejected"],
        "windows_failed": session.counts["windows_failed"], "keyframes": answers.keyframes,
        "frames_dropped": {k: v for k, v in streamer.counts.items() if k.endswith(("_outlier", "_stamp"))},
        "resets": resets, "seconds": elapsed, "fps": n_in / elapsed if elapsed > 0 else None,
        "metric": bool(streamer.metric),
        "depth_unit": "metres" if streamer.metric else "world units (first window's scale)",
        "world": streamer.world_mode, "alignment": statuses, "map_points": int(len(xyz)),
        "window_size": cfg.window_size, "stride": cfg.stride,
        "trajectory_note": _trajectory_note(answers, len(trajectory), cfg.path_max_length),
    }
    if EMBEDDED_VARIANT in str(model_name):
        summary["model_note"] = EMBEDDED_NOTE
    lines = [f"run-offline: {n_in} frames in {elapsed:.1f} s ({summary['fps'] or 0:.1f} fps), {n_answered} answered, "
             f"{answers.keyframes} keyframes, {summary['frames_rejected']} rejected, {resets} resets",
             f"  model: {model_name}",
             f"  world: {summary['world']}, depth in {summary['depth_unit']}, map {len(xyz)} points, "
             f"alignment {statuses}"]
    return summary, lines


def _trajectory_note(answers: _Answers, written: int, cap: int) -> Optional[str]:
    """What trajectory.tum leaves out, said."""
    in_segment = sum(1 for a in answers.answered if a.segment == answers.resets)
    notes = []
    if answers.resets:
        notes.append("trajectory.tum holds the last world segment (since the last reset)")
    if in_segment > written:
        notes.append(f"it holds the last {written} of its {in_segment} poses (--path-max-length {cap})")
    return "; ".join(notes) or None


def _evaluate(args, cfg: Settings, session: Session, answers: _Answers, gt, source, n_in: int, out: Path,
              summary: dict) -> List[str]:
    from . import evaluation

    ev = evaluation.evaluate(answers.answered, gt, bool(session.streamer.metric), cfg.window_size, args.max_dt,
                             image_of=_image_reader(source), frames_in=n_in)
    summary["evaluation"] = ev.summary
    evaluation.write_rows_csv(out / "frames.csv", ev.rows)
    lines = evaluation.headline(ev.summary) + [f"  per-frame numbers: {out / 'frames.csv'}"]
    if not args.no_picture:
        lines.append("  " + _draw(out / "summary.png", ev, summary["model"], source.kind, "model_note" in summary,
                                  summary))
    return lines


def run_rig(args, cfg: Settings) -> int:
    """run-offline on a rig bag: every camera's images grouped into rig frames
    by the streaming session (the node's rule: rig_sync_tolerance, rig_max_wait)
    and answered by one window; depth per camera, the rig's trajectory (its first
    camera) and calibration."""
    from ..io import bags, writers

    topics, views, static = _open_rig(args, cfg)
    model = _load_model(cfg)
    print(f"run-offline: rig {', '.join(f'{c} <- {t}' for c, t in zip(cfg.cameras, topics))}; model {model.name}",
          file=sys.stderr, flush=True)
    session = Session(model, StreamConfig.from_settings(cfg), warn=_warn)
    out = Path(args.out)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    answered, t0 = 0, time.perf_counter()
    for index, (stamp, camera, sf) in enumerate(views):
        T = static.get((cfg.base_frame, sf.frame_id)) if cfg.base_frame else None
        if cfg.base_frame and T is None:
            raise UsageError(f"--base-frame {cfg.base_frame!r}: the bag's /tf_static has no transform "
                             f"{cfg.base_frame} -> {sf.frame_id} (camera {camera})")
        frame = Frame(index=index, stamp=stamp, image=sf.image, camera=camera, meta=camera,
                      intrinsics=sf.intrinsics if cfg.use_camera_info else None, T_base_optical=T)
        for r in session.push(frame) + (session.flush() if index == len(views) - 1 else []):
            answered += 1
            if not args.no_frames:
                writers.write_depth_png_mm(out / "depth" / f"{r.meta}_{r.index:06d}.png", r.depth)
                np.save(out / "depth" / f"{r.meta}_{r.index:06d}.npy", r.depth)
    elapsed = time.perf_counter() - t0
    trajectory = session.streamer.trajectory()
    writers.write_tum(out / "trajectory.tum", trajectory.stamps, trajectory.c2w)
    metric = bool(session.streamer.metric)
    summary = {"input": str(args.input), "cameras": dict(zip(cfg.cameras, topics)), "model": model.name,
               "views_in": len(views), "views_answered": answered, "seconds": elapsed,
               "metric": metric, "rig": session.rig_summary()}
    writers.write_json(out / "summary.json", summary)
    print(f"run-offline: {answered}/{len(views)} views answered in {elapsed:.1f} s; "
          f"{'metric (metres from the rig)' if metric else 'relative scale'}; outputs in {out}")
    if not metric and session.streamer.rig is not None:  # say why the rig did not fix the scale
        state = session.streamer.rig.state()
        print(f"run-offline: rig scale {state.state}: {state.summary()}")
    return 0 if answered else 1


def _open_rig(args, cfg: Settings):
    """(each camera's image topic, every view in stamp order, /tf_static);
    UsageError when the rig's topics or base frame are not in the bag."""
    from ..io import bags
    from ..io.sources import BagSource

    cameras = cfg.cameras
    if not bags.is_bag_path(Path(args.input)):
        raise UsageError(f"--cameras takes a rosbag2 input (a folder with metadata.yaml, .mcap or .db3), "
                         f"not {args.input!r}")
    try:
        with bags.open_reader(args.input) as reader:
            images = [t.name for t in bags.list_topics(reader) if t.msgtype in bags.IMAGE_TYPES]
        topics = args.image_topic or bags.camera_image_topics(images, cameras)
        if len(topics) != len(cameras):
            raise ValueError(f"{len(topics)} image topics for {len(cameras)} cameras")
        sources = {c: BagSource(args.input, t, None, args.max_frames, rectified=cfg.input_rectified)
                   for c, t in zip(cameras, topics)}
        static = bags.static_transforms(args.input) if cfg.base_frame else {}
    except (bags.BagError, ValueError, OSError) as exc:
        raise UsageError(f"cannot open the rig's topics ({', '.join(cameras)}): {exc}") from None
    if cfg.base_frame and not any(parent == cfg.base_frame for parent, _ in static):
        have = sorted(f"{parent} -> {child}" for parent, child in static) or ["nothing"]
        raise UsageError(f"--base-frame {cfg.base_frame!r} is not a parent in the bag's /tf_static (it has "
                         f"{', '.join(have[:6])}): give the rig's base frame, or leave --base-frame out")
    # every camera's frames in stamp order, as the node would receive them
    views = sorted(((float(sf.stamp), c, sf) for c, src in sources.items() for sf in src), key=lambda v: (v[0], v[1]))
    return topics, views, static


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
