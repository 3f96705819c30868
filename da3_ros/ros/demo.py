"""`python -m da3_ros.ros.demo` (`make demo`): the live node on a synthetic camera, end to end.

1. runs the node with `model: default` (the official DA3-SMALL when cached or
   reachable, else the embedded da3-tiny shipped in the package: no download
   needed; `da3_ros.weights.resolve_default_model`, also used here for the report);
2. renders a held-out synthetic sequence (never trained on) and writes it as a
   rosbag2 (MCAP) with `da3_ros.io.bags`: rgb8 images + CameraInfo;
3. starts `da3_node` (subprocess) and `da3_ros replay <bag>` (subprocess, the
   camera) on real DDS, kept on loopback with a domain id of its own
   (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_LOCALHOST_ONLY=1, ROS_DOMAIN_ID);
4. records the node's outputs (depth, confidence, odometry, map) in this process;
5. writes `demo_output/`: depth PNGs (16-bit mm and colour), the map as PLY, the
   trajectory (TUM) beside the ground truth, metrics.json and summary.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

DEMO_DOMAIN_ID = "73"
NAMESPACE = "/da3"


def write_bag(seq, path: Path) -> None:
    from ..io import bags

    ts = bags.get_typestore()
    frame = "demo_camera_optical_frame"
    with bags.open_writer(path, storage="mcap") as w:
        img = bags.add_topic(w, f"{NAMESPACE}/image", bags.IMAGE, ts)
        info = bags.add_topic(w, f"{NAMESPACE}/camera_info", bags.CAMERA_INFO, ts)
        for i, t in enumerate(seq.stamps):
            ns = int(round(float(t) * 1e9))
            w.write(info, ns, bags.serialize(ts, bags.camera_info_msg(ts, seq.intrinsics, seq.width, seq.height, float(t), frame)))
            w.write(img, ns + 1, bags.serialize(ts, bags.image_msg(ts, seq.images[i], "rgb8", float(t), frame)))


class Recorder:
    """Keeps the node's outputs by stamp (ns)."""

    def __init__(self, node, cameras=()):
        from nav_msgs.msg import Odometry, Path
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2

        self.depth: Dict[int, object] = {}
        self.conf: Dict[int, object] = {}
        self.odom: Dict[int, object] = {}
        #: with a rig: camera -> {stamp ns: depth image}
        self.camera_depth: Dict[str, Dict[int, object]] = {c: {} for c in cameras}
        self.map = None
        self.last = time.monotonic()
        rel = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, f"{NAMESPACE}/depth/image", lambda m: self._put(self.depth, m), rel)
        node.create_subscription(Image, f"{NAMESPACE}/depth/confidence", lambda m: self._put(self.conf, m), rel)
        for c in cameras:
            node.create_subscription(Image, f"{NAMESPACE}/{c}/depth/image",
                                     lambda m, c=c: self._put(self.camera_depth[c], m), rel)
        node.create_subscription(Odometry, f"{NAMESPACE}/odometry", lambda m: self._put(self.odom, m), rel)
        #: the node's last path: its trajectory as it holds it (re-expressed in metres once a rig fixed the scale)
        self.path = None
        node.create_subscription(Path, f"{NAMESPACE}/path", self._on_path, rel)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(PointCloud2, f"{NAMESPACE}/map/points", self._on_map, latched)
        from diagnostic_msgs.msg import DiagnosticArray

        self.diagnostics: Dict[str, str] = {}  # the node's last /diagnostics values
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_diagnostics(self, m):
        for status in m.status:
            self.diagnostics = {kv.key: kv.value for kv in status.values}

    def _put(self, d, m):
        from .conversions import stamp_to_ns

        d[stamp_to_ns(m.header.stamp)] = m
        self.last = time.monotonic()

    def _on_map(self, m):
        self.map = m

    def _on_path(self, m):
        self.path = m


def colourise(x: np.ndarray, lo: float, hi: float, cmap: str = "turbo") -> np.ndarray:
    import matplotlib

    v = np.clip((np.nan_to_num(x, nan=lo) - lo) / max(hi - lo, 1e-9), 0, 1)
    rgb = (matplotlib.colormaps[cmap](v)[..., :3] * 255).astype(np.uint8)
    rgb[~np.isfinite(x)] = 0
    return rgb


def summary_png(path: Path, seq, idx: List[int], depth: Dict[int, np.ndarray], conf: Dict[int, np.ndarray],
                est: np.ndarray, gt: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [idx[int(round(j))] for j in np.linspace(0, len(idx) - 1, 4)] if idx else []
    fig = plt.figure(figsize=(16, 9.5))
    gs = fig.add_gridspec(3, 5, width_ratios=[1, 1, 1, 1, 1.6])
    finite = np.concatenate([depth[i][np.isfinite(depth[i])] for i in show]) if show else np.array([1.0])
    lo, hi = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    for c, i in enumerate(show):
        for r, (img, name) in enumerate([(seq.images[i], "image"), (depth[i], "depth"), (conf[i], "confidence")]):
            ax = fig.add_subplot(gs[r, c])
            if r == 0:
                ax.imshow(img)
            elif r == 1:
                ax.imshow(img, cmap="turbo", vmin=lo, vmax=hi)
            else:
                ax.imshow(img, cmap="viridis", vmin=1.0, vmax=max(float(np.nanpercentile(img, 98)), 1.01))
            ax.set_title(f"frame {i}: {name}", fontsize=9)
            ax.axis("off")
    ax = fig.add_subplot(gs[:, 4])
    ax.plot(gt[:, 0, 3], gt[:, 1, 3], "k-", lw=2, label="ground truth")
    ax.plot(est[:, 0, 3], est[:, 1, 3], "r.-", lw=1, ms=3, label="da3_node (Sim(3)-aligned)")
    ax.plot(gt[:1, 0, 3], gt[:1, 1, 3], "go", label="start")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title("trajectory, top view")
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m da3_ros.ros.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo_output", help="output directory (replaced)")
    p.add_argument("--model", default="default", help="model for da3_node (default: hub DA3-SMALL if available, else embedded)")
    p.add_argument("--sequence", default="orbit", help="held-out sequence: forward | orbit | rotation | stop_and_go")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--rate", type=float, default=0.0, help="replay rate (0: from --fps)")
    p.add_argument("--fps", type=float, default=1.5, help="camera frames per second of wall time (slow enough for a CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--pose-source", default="camera", choices=["ray", "camera"],
                   help="node parameter pose_source (camera: the ray solver is 5-10x slower on a CPU, where it made "
                        "the node drop 24 of 60 frames at 1.5 frames/s)")
    p.add_argument("--rig", choices=["stereo", "three"], default=None,
                   help="a camera rig instead of one camera: a stereo pair (10 cm) or three cameras at -60/0/+60 deg, "
                        "one node, extrinsics on /tf_static, metric scale from the rig")
    p.add_argument("--domain-id", default=DEMO_DOMAIN_ID)
    p.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    return p.parse_args(argv)


def _resolve_model(model: str):
    """(the model source, a sentence saying what it is, its process_res)."""
    from ..weights import default_process_res, resolve_default_model

    source, desc = resolve_default_model() if model == "default" else (model, f"model {model!r}")
    return source, desc, default_process_res(source) or 504


def _held_out_bag(a, out: Path):
    """The held-out synthetic sequence `a.sequence`, rendered and written as a camera bag."""
    from ..synthetic import make_sequence
    from ..synthetic.trajectories import HELD_OUT

    seeds = dict(HELD_OUT)
    if a.sequence not in seeds:
        raise SystemExit(f"unknown sequence {a.sequence!r}: one of {sorted(seeds)}")
    seq = make_sequence(a.sequence, a.frames, 320, 240, seeds[a.sequence])
    bag = out / "camera_bag"
    write_bag(seq, bag)
    print(f"[demo] held-out sequence {a.sequence!r} (seed {seeds[a.sequence]}, {len(seq)} frames 320x240) -> {bag}",
          flush=True)
    return seq, seeds[a.sequence], bag


def _run_live(a, env: Dict[str, str], out: Path, bag: Path, stamps, node_model: str, process_res: int,
              node_params: Sequence[str] = (), cameras: Sequence[str] = ()):
    """da3_node and `da3_ros replay <bag>` as subprocesses on loopback DDS, the
    node's outputs recorded here -> (Recorder, seconds of replay)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    node_exe = shutil.which("da3_node")
    node_cmd = ([node_exe] if node_exe else [sys.executable, "-m", "da3_ros.ros.node"]) + [
        "--ros-args", "-r", f"__ns:={NAMESPACE}", "-p", f"model:={node_model}", "-p", f"process_res:={process_res}",
        "-p", f"device:={a.device}", "-p", f"pose_source:={a.pose_source}", "-p", "use_sim_time:=false",
        "-p", "input_reliability:=reliable", "-p", "max_depth:=1000.0", "-p", "min_confidence:=1.0"]
    for param in node_params:
        node_cmd += ["-p", param]
    rate = a.rate or a.fps / 30.0
    replay_cmd = [sys.executable, "-m", "da3_ros.cli", "replay", str(bag), "--rate", f"{rate:g}", "--delay", "0.5"]
    rclpy.init()
    rec_node = rclpy.create_node("da3_demo_recorder")
    rec = Recorder(rec_node, cameras)
    answers = rec.camera_depth[cameras[0]] if cameras else rec.depth
    ex = SingleThreadedExecutor()
    ex.add_node(rec_node)
    log = open(out / "node.log", "w")
    print(f"[demo] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} (loopback only); starting da3_node ...", flush=True)
    node = subprocess.Popen(node_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    replay = None
    t0 = time.monotonic()

    def node_alive():
        if node.poll() is not None:
            raise RuntimeError(f"da3_node exited with {node.returncode}; see {out / 'node.log'}")

    try:
        while time.monotonic() - t0 < 120:  # the node is up once its publishers exist
            ex.spin_once(timeout_sec=0.2)
            node_alive()
            if rec_node.count_publishers(f"{NAMESPACE}/odometry") > 0:
                break
        print(f"[demo] da3_node ready after {time.monotonic() - t0:.1f} s; replaying the bag at rate {rate:g} "
              f"({a.fps:g} frames/s)", flush=True)
        replay = subprocess.Popen(replay_cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        t_rep = time.monotonic()
        expected = set(int(round(float(t) * 1e9)) for t in stamps)
        while time.monotonic() - t0 < a.timeout:
            ex.spin_once(timeout_sec=0.1)
            done = replay.poll() is not None
            if done and (expected <= set(answers) or time.monotonic() - rec.last > 10.0):
                break
            node_alive()
        end = time.monotonic() + 4.0
        while time.monotonic() < end:  # the map (published every second once the worker is idle)
            ex.spin_once(timeout_sec=0.1)
        return rec, time.monotonic() - t_rep
    finally:
        for proc in (replay, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in (replay, node):
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        log.close()
        rec_node.destroy_node()
        rclpy.try_shutdown()


def _write_results(out: Path, seq, rec, wall: float, info: dict) -> int:
    """Scores against ground truth, depth PNGs, map, trajectories, metrics.json, summary.png."""
    from PIL import Image

    from ..geometry import ate, depth_metrics
    from ..io.writers import write_depth_png_mm, write_ply, write_tum
    from .conversions import cloud_to_points, image_to_depth, pose_to_matrix

    stamp_to_idx = {int(round(float(t) * 1e9)): i for i, t in enumerate(seq.stamps)}
    got = sorted(s for s in rec.depth if s in stamp_to_idx and s in rec.odom)
    if not got:
        print(f"[demo] no outputs received from da3_node; see {out / 'node.log'}", file=sys.stderr)
        return 1
    idx = [stamp_to_idx[s] for s in got]
    depth = {stamp_to_idx[s]: image_to_depth(rec.depth[s]) for s in got}
    conf = {stamp_to_idx[s]: (image_to_depth(rec.conf[s]) if s in rec.conf else np.ones_like(depth[stamp_to_idx[s]]))
            for s in got}
    est = np.array([pose_to_matrix(rec.odom[s].pose.pose) for s in got])
    gt = seq.c2w[idx]
    stamps = np.array([s * 1e-9 for s in got])
    write_tum(out / "trajectory.tum", stamps, est)
    write_tum(out / "groundtruth.tum", stamps, gt)
    # one scale (median gt / predicted depth over all frames) puts the relative model in metres
    pr = np.stack([depth[i] for i in idx]).astype(np.float64)
    g = seq.depth[idx].astype(np.float64)
    ok = np.isfinite(pr) & (pr > 0) & (g > 0)
    scale = float(np.median(g[ok] / pr[ok]))
    dm = depth_metrics(pr, g, scale=scale)
    a_sim3 = ate(est, gt, "sim3") if np.ptp(gt[:, :3, 3], axis=0).max() > 0.5 else None
    est_m = est.copy()
    est_m[:, :3, 3] *= scale
    a_se3 = ate(est_m, gt, "se3")
    aligned = (a_sim3 or a_se3).alignment.apply_c2w(est if a_sim3 else est_m)
    for i in idx:
        write_depth_png_mm(out / "depth" / f"{i:06d}.png", depth[i] * scale)
    lo, hi = np.nanpercentile(pr[ok], [2, 98]) if ok.any() else (0.0, 1.0)
    for i in idx:
        Image.fromarray(colourise(depth[i], lo, hi)).save(out / "depth_colour" / f"{i:06d}.png")
    n_map = 0
    if rec.map is not None:
        xyz, rgb = cloud_to_points(rec.map)
        n_map = len(xyz)
        write_ply(out / "map.ply", xyz, rgb)
    ate_rmse = (a_sim3 or a_se3).rmse
    # reference: a camera that never moves (Sim(3) shrinks it onto the centroid): the
    # RMS distance of the ground-truth centres from their mean
    centres = gt[:, :3, 3]
    ate_still = float(np.sqrt(np.mean(np.sum((centres - centres.mean(0)) ** 2, axis=1))))
    metrics = {**info, "frames_sent": len(seq), "frames_answered": len(idx),
               "depth_scale_to_metres": scale, "abs_rel": dm.abs_rel, "delta1": dm.delta1,
               "depth_pixels": dm.n_pixels, "ate_rmse_m": ate_rmse, "ate_standing_still_m": ate_still,
               "ate_alignment": "sim3" if a_sim3 else "se3 after the depth scale",
               "path_length_m": float(np.sum(np.linalg.norm(np.diff(centres, axis=0), axis=1))),
               "map_points": n_map, "wall_seconds": wall}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    short = "embedded da3-tiny" if "embedded" in info["model"] else info["source"]
    title = (f"da3_node ({short}) on held-out synthetic '{info['sequence']}' (seed {info['seed']}), "
             f"{len(idx)}/{len(seq)} frames answered: ATE {ate_rmse:.3f} m ({metrics['ate_alignment']}, "
             f"path {metrics['path_length_m']:.2f} m; a standing camera: {ate_still:.2f} m),\n"
             f"depth AbsRel {dm.abs_rel:.3f}, delta1 {dm.delta1:.3f}")
    summary_png(out / "summary.png", seq, idx, depth, conf, aligned, gt, title)
    print(f"[demo] {len(idx)}/{len(seq)} frames answered in {wall:.1f} s; ATE {ate_rmse:.3f} m "
          f"({metrics['ate_alignment']}; a standing camera {ate_still:.2f} m), AbsRel {dm.abs_rel:.3f}, "
          f"delta1 {dm.delta1:.3f}", flush=True)
    print(f"[demo] outputs in {out}:\n"
          f"  summary.png        images, depth, confidence; top-view trajectory vs ground truth\n"
          f"  depth/*.png        16-bit depth, millimetres (scaled by the median ground-truth ratio {scale:.3f})\n"
          f"  depth_colour/*.png colour depth\n"
          f"  map.ply            world map from map/points ({n_map} points, world units)\n"
          f"  trajectory.tum     node odometry (TUM); groundtruth.tum beside it\n"
          f"  metrics.json       the numbers above; node.log the node's and replay's output\n"
          f"  camera_bag/        the camera bag that was replayed", flush=True)
    if "embedded" in info["model"]:
        print("[demo] note: the embedded da3-tiny knows synthetic box rooms only; on real camera images it is "
              "worse than a constant depth: use model:=depth-anything/DA3-SMALL there", flush=True)
    return 0


def _rig_demo(a, env: Dict[str, str], out: Path, node_model: str, desc: str, process_res: int) -> int:
    """The rig demo: one node for every camera; each camera's depth and the rig's
    trajectory against ground truth, in metres from the rig's baselines (no
    ground-truth scale is used)."""
    from ..geometry import ate, depth_metrics
    from ..geometry.transforms import inv_se3
    from ..synthetic.rig import make_rig_sequence, write_rig_bag
    from ..synthetic.trajectories import HELD_OUT
    from .conversions import image_to_depth, pose_to_matrix

    seed = dict(HELD_OUT)[a.sequence]
    rig = make_rig_sequence(a.rig, a.sequence, n_frames=a.frames, width=320, height=240, seed=seed, jitter=0.002)
    bag = out / "camera_bag"
    write_rig_bag(rig, bag, NAMESPACE)
    names = rig.camera_names
    print(f"[demo] held-out rig '{a.rig}' on '{a.sequence}' (seed {seed}; cameras {', '.join(names)}; "
          f"{len(rig)} rig frames 320x240) -> {bag}", flush=True)
    params = [f"cameras:=[{','.join(names)}]", f"base_frame:={rig.base_frame}", f"window_size:={4 * len(names)}"]
    stamps = [rig.stamps[rig.view(k, names[0])] for k in range(len(rig))]
    rec, wall = _run_live(a, env, out, bag, stamps, node_model, process_res, params, names)

    # depth per camera, unscaled: the node's metres against the rendered ones
    view_of = {(names[rig.view_camera[v]], int(round(float(rig.stamps[v]) * 1e9))): v for v in range(len(rig.stamps))}
    shown, metrics = {}, {"model": desc, "rig": a.rig, "sequence": a.sequence, "seed": seed, "rig_frames": len(rig),
                          "wall_seconds": wall, "cameras": {}}
    for c in names:
        got = sorted(s for s in rec.camera_depth[c] if (c, s) in view_of)
        if not got:
            continue
        late = got[len(got) // 2:]  # after the scale had time to settle
        pred = np.stack([image_to_depth(rec.camera_depth[c][s]) for s in late]).astype(np.float64)
        gt = np.stack([rig.depth[view_of[(c, s)]] for s in late]).astype(np.float64)
        ok = np.isfinite(pred) & (pred > 0) & (gt > 0)
        dm = depth_metrics(pred, gt)
        metrics["cameras"][c] = {"answered": len(got), "abs_rel_unscaled": dm.abs_rel, "delta1_unscaled": dm.delta1,
                                 "scale_error": float(np.median(gt[ok] / pred[ok]) - 1.0) if ok.any() else None}
        shown[c] = [(view_of[(c, s)], image_to_depth(rec.camera_depth[c][s])) for s in got[:: max(1, len(got) // 3)][:3]]
    # the rig's trajectory: odom -> base_link against the ground-truth base poses
    odom = sorted(s for s in rec.odom if (names[0], s) in view_of)
    if not odom:
        print(f"[demo] no outputs received from da3_node; see {out / 'node.log'}", file=sys.stderr)
        return 1
    T_base = inv_se3(rig.cameras[0].T_base_optical)
    base0 = rig.c2w[view_of[(names[0], odom[0])]] @ T_base
    gt_base = np.array([inv_se3(base0) @ rig.c2w[view_of[(names[0], s)]] @ T_base for s in odom])
    est = np.array([pose_to_matrix(rec.odom[s].pose.pose) for s in odom])
    answered = len(odom)
    a_live = ate(est, gt_base, "se3")  # every odometry message as published (before the scale was fixed: other units)
    # the node's trajectory at the end (its last path: what ~/save writes, in metres once the rig fixed the scale)
    from .conversions import stamp_to_ns

    final = {stamp_to_ns(p.header.stamp): pose_to_matrix(p.pose) for p in (rec.path.poses if rec.path else [])}
    both = [i for i, s in enumerate(odom) if s in final]
    if len(both) >= 3:
        est = np.array([final[odom[i]] for i in both])
        gt_base, odom = gt_base[both], [odom[i] for i in both]
    a_se3 = ate(est, gt_base, "se3") if len(both) >= 3 else a_live
    diag = {k: v for k, v in rec.diagnostics.items() if k.startswith("rig_") or k == "scale"}
    metric = diag.get("rig_state") == "metric"  # the node's word, not ours: it fixed the scale from the rig
    unit = "metres" if metric else "the first window's unit (not metres)"
    metrics.update(rig_frames_answered=answered, ate_se3_m=a_se3.rmse, ate_se3_live_odometry_m=a_live.rmse,
                   ate_of="the node's final path" if len(both) >= 3 else "live odometry (no path received)",
                   rig_state=diag.get("rig_state", "unknown"),
                   unit=unit, path_length_m=float(np.sum(np.linalg.norm(np.diff(gt_base[:, :3, 3], axis=0), axis=1))),
                   node_rig_diagnostics=diag)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(len(v) for v in shown.values()) if shown else 1
    fig = plt.figure(figsize=(4 * cols + 6, 2.6 * len(names) * 2))
    gs = fig.add_gridspec(2 * len(names), cols + 1, width_ratios=[1] * cols + [1.6])
    for r, c in enumerate(names):
        for k, (v, depth) in enumerate(shown.get(c, [])):
            # its own range: the structure shows whatever the unit (metres only once the rig fixed it)
            lo, hi = np.nanpercentile(depth, [2, 98]) if np.isfinite(depth).any() else (0.0, 1.0)
            for row, (img, what) in enumerate([(rig.images[v], "image"), (depth, "depth")]):
                ax = fig.add_subplot(gs[2 * r + row, k])
                ax.imshow(img) if row == 0 else ax.imshow(img, cmap="turbo", vmin=lo, vmax=hi)
                ax.set_title(f"{c}, rig frame {rig.view_frame[v]}: {what}" + (f" {lo:.2f}..{hi:.2f}" if row else ""),
                             fontsize=8)
                ax.axis("off")
    ax = fig.add_subplot(gs[:, cols])
    ax.plot(gt_base[:, 0, 3], gt_base[:, 1, 3], "k-", lw=2, label="ground truth (base_link)")
    ax.plot(est[:, 0, 3], est[:, 1, 3], "r.-", lw=1, ms=3,
            label="da3_node path at the end (" + ("metres from the rig" if metric else
                                                   "NOT metric: the rig did not fix the scale") + ", unaligned)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x [m]; odometry: " + ("m" if metric else "first window's unit"))
    ax.set_ylabel("y [m]; odometry: " + ("m" if metric else "first window's unit"))
    ax.legend(loc="best", fontsize=8)
    ax.grid(True, alpha=0.3)
    errors = ", ".join(f"{c} {100 * m['scale_error']:+.1f}%" for c, m in metrics["cameras"].items()
                       if m["scale_error"] is not None)
    ate_words = (f"ATE {a_se3.rmse:.3f} m (final path; live odometry {a_live.rmse:.3f} m; SE(3), no scale fitted)"
                 if metric else f"ATE {a_se3.rmse:.3f} (SE(3), the path in the first window's unit against metres)")
    fig.suptitle(f"da3_node, {a.rig} rig on held-out '{a.sequence}': {answered}/{len(rig)} rig frames answered; "
                 f"rig scale {diag.get('rig_state', 'unknown')}; depth scale error (second half) {errors}; {ate_words}",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=70)
    plt.close(fig)
    print(f"[demo] {answered}/{len(rig)} rig frames answered in {wall:.1f} s; depth scale error {errors}; "
          f"{ate_words}; outputs in {out} (summary.png, metrics.json, node.log)", flush=True)
    for c in names:
        print(f"[demo] rig camera {c}: {diag.get(f'rig_{c}_state', 'unknown')}: {diag.get(f'rig_{c}', 'no diagnostics')}",
              flush=True)
    if not metric:
        print(f"[demo] FAILED: the node did not fix the rig's metric scale (rig_state "
              f"{diag.get('rig_state', 'unknown: no /diagnostics received')}); depth and odometry are in the first "
              "window's unit, not metres", file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    from .dds import keep_on_loopback

    env = dict(keep_on_loopback(os.environ, a.domain_id))  # this process (its recorder) and the children
    out = Path(a.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / "depth").mkdir(parents=True)
    (out / "depth_colour").mkdir()
    source, desc, process_res = _resolve_model(a.model)
    print(f"[demo] {desc}", flush=True)
    seq, seed, bag = _held_out_bag(a, out) if not a.rig else (None, None, None)
    node_model = a.model if a.model == "default" else source
    if a.rig:
        return _rig_demo(a, env, out, node_model, desc, process_res)
    rec, wall = _run_live(a, env, out, bag, seq.stamps, node_model, process_res)
    info = {"model": desc, "source": str(source), "process_res": process_res, "sequence": a.sequence, "seed": seed}
    return _write_results(out, seq, rec, wall, info)


if __name__ == "__main__":
    raise SystemExit(main())
