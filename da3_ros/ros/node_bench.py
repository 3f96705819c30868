"""`da3_ros bench-node`: the REAL node end to end over loopback DDS.

One da3_node (this process, the node's defaults: every output on, the map on,
spun in `ros.node.node_executor` as `da3_node` spins it) and one camera process beside
it (its own interpreter, as a camera driver and the consumers are): the camera
publishes 640x480 rgb8 images with their CameraInfo at a fixed rate (30 Hz,
60 Hz) or as fast as the node answers (`max`: a new image whenever fewer than
two are unanswered), and subscribes to EVERY output (depth, its camera_info,
confidence, points, odometry, path, TF, keyframes, the map), so everything the
node can build is built. Per phase it reports:

  * FPS (depth images received per second of the phase) and the frames dropped
    (images published that never got a depth image: the newest wins);
  * latency from the image's publish to its depth image's arrival, p50 / p99 / max;
  * where that time goes, per frame, stages that add up to it exactly (means):
    transport in (DDS to the node's callback), wait (for the inference thread),
    decode, network (the model's encode + predict; on CUDA also the GPU's own
    time from CUDA events, `gpu`), world (the rest of the streaming core:
    alignment, keyframes), hand-over (to the output thread), depth out (its
    messages up to the depth image), transport out (DDS to the subscriber);
  * the map: frames inserted and skipped, ms per insert, against the map's size;
  * CUDA-graph captures after warm-up (0 expected) and the node's drop counters.

A CSV per frame (`frames.csv`), one per map insert (`map.csv`), `bench_node.json`
and, with matplotlib, `cost_vs_map.png` (host work per frame and map insert
against map size) go to --out. Models: `oracle` (the exact oracle on the
rendered sequence: the network costs ~nothing, so what is left is the host),
a DA3 variant name (`da3-small`, `da3-large`, ...: its architecture with
RANDOM weights, as `da3_ros bench`), or any node `model` value (`default`, a hub
id, a folder). The images: a short rendered sequence played forwards and
backwards (stamps 1/30 s apart whatever the publish rate).

This entry point keeps DDS on loopback with a domain of its own
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, ROS_LOCALHOST_ONLY=1, ROS_DOMAIN_ID);
the node itself never sets them.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from da3_ros.usage import ArgumentParser, one_line_errors

#: the stages of one frame, in order; their sum is the image -> depth latency
STAGES = ("transport_in", "wait", "decode", "network", "world", "handover", "depth_out", "transport_out")
#: the node's outputs the camera process counts (topic -> short name); the map is latched
COUNTED = {"depth/image": "depth", "depth/camera_info": "depth_info", "depth/confidence": "confidence",
           "points": "points", "odometry": "odometry", "path": "path", "/tf": "tf", "keyframe": "keyframe",
           "map/points": "map"}
#: variant names that mean "this DA3 architecture with random weights"
RANDOM_PREFIX = "random:"
FRAME_PERIOD_NS = 33_333_333  # stamps 1/30 s apart
T0_NS = 1_000_000_000_000  # the first stamp (1000 s), as the synthetic sequences


def pingpong(k: int, n: int) -> int:
    """Frame shown at publish k of an n-frame sequence played forwards, backwards, ..."""
    if n <= 1:
        return 0
    m = k % (2 * (n - 1))
    return m if m < n else 2 * (n - 1) - m


# ---------------------------------------------------------------- the node's side


class NetworkTimer:
    """The WindowModel handed to the node, passing through to `model`: each call's
    host wall time (encode + predict: predict returns host arrays, so the GPU work
    is inside) goes into the frame's marks (`network_ms`), and on CUDA the GPU's
    own time between CUDA events (`gpu_ms`). A window's predict counts for its
    newest frame."""

    def __init__(self, model):
        self._model = model
        self.name, self.metric = model.name, model.metric
        device = getattr(model, "device", None)
        self._cuda = getattr(device, "type", None) == "cuda"
        self._pending: List[Any] = []  # (marks, start event, end event) not read yet

    def __getattr__(self, name):  # warmup, captures_after_warmup, ...
        return getattr(self._model, name)

    def encode(self, frame):
        return self._timed(frame.meta, lambda: self._model.encode(frame))

    def predict(self, frames, handles, decode, intrinsics=None, c2w=None):
        out = self._timed(frames[-1].meta, lambda: self._model.predict(frames, handles, decode, intrinsics=intrinsics,
                                                                      c2w=c2w))
        if self._cuda:  # predict's results are on the host: its events (and encode's) are done
            for marks, start, end in self._pending:
                end.synchronize()
                marks["gpu_ms"] = marks.get("gpu_ms", 0.0) + start.elapsed_time(end)
            self._pending = []
        return out

    def _timed(self, meta, call):
        marks = getattr(meta, "marks", None)
        if marks is None:  # not a node frame (warm-up)
            return call()
        if self._cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        try:
            return call()
        finally:
            marks["network_ms"] = marks.get("network_ms", 0.0) + 1e3 * (time.perf_counter() - t0)
            if self._cuda:
                end.record()
                self._pending.append((marks, start, end))


def make_model(spec: str, seq):
    """The WindowModel a variant name stands for (see the module docstring)."""
    from da3_ros.ros.params import default_config
    from da3_ros.runtime.models import make_window_model, model_settings

    if spec == "oracle":
        from da3_ros.synthetic import OracleModel

        return OracleModel(_pingpong_class().of(seq))
    if spec.startswith("da3-") or spec.startswith("da3_"):
        spec = RANDOM_PREFIX + spec
    return make_window_model(model_settings(default_config(model=spec)))


def _pingpong_class():
    from da3_ros.synthetic.sequence import SyntheticSequence

    class PingPong(SyntheticSequence):
        """A short sequence played forwards and backwards for as long as the bench
        runs: the image at stamp T0 + k/30 s is frame pingpong(k)."""

        @classmethod
        def of(cls, seq):
            return cls(seq.name, seq.images, seq.depth, seq.intrinsics, seq.c2w, seq.stamps)

        def index_of_stamp(self, stamp: float, tol: float = 1e-4) -> int:
            k = int(round((stamp * 1e9 - T0_NS) / FRAME_PERIOD_NS))
            return pingpong(k, len(self))

    return PingPong


def prefill_map(node, n: int) -> None:
    """n old voxels far below the scene in the node's world map (the first evicted)."""
    from da3_ros.ros.host_bench import _prefill

    world = node.pipeline.streamer.world
    with world._lock:
        _prefill(world._map, n)


def run_variant(spec: str, seq, seq_dir: Path, args, env: Dict[str, str], log=print) -> Dict[str, Any]:
    """One node, one camera process: warm-up, then every phase of args.rates."""
    import rclpy

    from da3_ros.ros.node import Da3Node, node_executor, spin_until_shutdown

    t0 = time.perf_counter()
    model = NetworkTimer(make_model(spec, seq))
    load_s = time.perf_counter() - t0
    log(f"[{spec}] model {model.name} ready in {load_s:.1f} s")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Da3Node(model=model, context=context)
    executor = node_executor(context)  # as da3_node's main()
    executor.add_node(node)
    spinner = threading.Thread(target=spin_until_shutdown, args=(executor,), daemon=True)
    spinner.start()
    if args.map_prefill:
        prefill_map(node, args.map_prefill)
    camera_cfg = {"seq_dir": str(seq_dir), "rates": args.rates, "seconds": args.seconds,
                  "warmup_answers": args.warmup_answers, "warmup_timeout": args.warmup_timeout,
                  "max_in_flight": args.max_in_flight}
    try:
        proc = subprocess.run([sys.executable, "-m", "da3_ros.ros.node_bench", "--camera-process", json.dumps(camera_cfg)],
                              env=env, capture_output=True, text=True,
                              timeout=args.warmup_timeout + 60 + len(args.rates) * (args.seconds + 30))
        if proc.returncode != 0 or not proc.stdout.strip():
            raise RuntimeError(f"camera process failed ({proc.returncode}): {proc.stderr.strip()[-3000:]}")
        camera = json.loads(proc.stdout.strip().splitlines()[-1])
        for p in camera["phases"]:  # JSON made the stamps strings
            p["arrivals"] = {name: {int(ns): t for ns, t in d.items()} for name, d in p["arrivals"].items()}
    finally:
        node.stop()
        stats = node.stats
        with stats.lock:
            marks = list(stats.frame_marks)
            map_log = list(stats.map_log)
            counters = {"received": stats.received, "answered": stats.answered,
                        "dropped_input": node.slot.dropped, "dropped_answered": stats.answers_dropped,
                        "map_inserted": stats.map_inserted, "map_skipped": stats.map_skipped,
                        "bad_inputs": stats.bad_inputs, "last_error": stats.last_error}
        captures = int(getattr(model, "captures_after_warmup", 0))
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5.0)
    phases = [summarise_phase(p, marks) for p in camera["phases"]]
    return {"variant": spec, "model": model.name, "device": _device_name(model), "load_s": load_s,
            "messages_received": camera["messages"],
            "warmup_s": camera["warmup_s"], "captures_after_warmup": captures, "counters": counters,
            "phases": phases, "map_log": map_log, "frames": _frame_rows(spec, camera["phases"], marks)}


def _device_name(model) -> str:
    device = getattr(model, "device", None)
    if getattr(device, "type", None) == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return "cpu"


def _by_stamp(marks: List[Dict[str, float]]) -> Dict[int, Dict[str, float]]:
    return {int(round(m["stamp"] * 1e6)): m for m in marks if "stamp" in m}  # microseconds: exact for 1/30 s stamps


def frame_stages(t_pub: float, t_depth: float, m: Dict[str, float]) -> Dict[str, float]:
    """One frame's stages (ms) from the camera's publish/arrival times and the
    node's marks (all time.monotonic(), one clock on one machine); they add up
    to the latency."""
    net = m.get("network_ms", 0.0)
    out = {"transport_in": m["received"] - t_pub, "wait": m["taken"] - m["received"],
           "decode": m["decoded"] - m["taken"], "network": net / 1e3,
           "world": m["answered"] - m["decoded"] - net / 1e3, "handover": m["built"] - m["answered"],
           "depth_out": m["depth"] - m["built"], "transport_out": t_depth - m["depth"]}
    return {k: 1e3 * v for k, v in out.items()}


def _frame_rows(spec: str, phases, marks) -> List[Dict[str, Any]]:
    node = _by_stamp(marks)
    rows = []
    for p in phases:
        depth = p["arrivals"].get("depth", {})
        for ns, t_pub in p["published"]:
            m = node.get(int(round(ns / 1e3)))
            t_depth = depth.get(ns)
            if m is None or t_depth is None or "depth" not in m:
                continue
            st = frame_stages(t_pub, t_depth, m)
            host = 1e3 * (m["published"] - m["taken"]) - st["network"] - st["handover"]
            rows.append({"variant": spec, "phase": p["name"], "stamp_ns": ns, "map_points": int(m["map_points"]),
                         "latency_ms": 1e3 * (t_depth - t_pub), "host_ms": host, "gpu_ms": m.get("gpu_ms", float("nan")),
                         **st})
    return rows


def summarise_phase(p: Dict[str, Any], marks) -> Dict[str, Any]:
    node = _by_stamp(marks)
    published = p["published"]
    depth = p["arrivals"].get("depth", {})
    lat, stages, gpu = [], {k: [] for k in STAGES}, []
    for ns, t_pub in published:
        if ns not in depth:
            continue
        lat.append(1e3 * (depth[ns] - t_pub))
        m = node.get(int(round(ns / 1e3)))
        if m is not None and "depth" in m:
            for k, v in frame_stages(t_pub, depth[ns], m).items():
                stages[k].append(v)
            if "gpu_ms" in m:
                gpu.append(m["gpu_ms"])
    n_pub, n_depth = len(published), len(lat)
    span = p["end"] - p["start"]
    counts = {name: sum(1 for ns, _ in published if ns in p["arrivals"].get(name, {}))
              for name in ("depth", "depth_info", "tf", "odometry", "points", "confidence", "keyframe")}
    counts["map"] = p["map_messages"]
    a = np.asarray(lat) if lat else np.full(1, np.nan)
    return {"name": p["name"], "rate_hz": p["rate"], "seconds": span, "published": n_pub, "answered": n_depth,
            "dropped": n_pub - n_depth, "fps": n_depth / span if span > 0 else float("nan"),
            "latency_ms": {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
                           "max": float(np.max(a))},
            "stages_mean_ms": {k: float(np.mean(v)) if v else float("nan") for k, v in stages.items()},
            "gpu_mean_ms": float(np.mean(gpu)) if gpu else None, "received": counts}


# ---------------------------------------------------------------- the camera's side


def _stamp_of(raw: bytes, tf: bool) -> int:
    """The header stamp (ns) of a serialised message (CDR, little endian: 4 bytes of
    encapsulation, then the Header; a TFMessage's first transform after its length)."""
    sec, nsec = struct.unpack_from("<iI", raw, 8 if tf else 4)
    return sec * 1_000_000_000 + nsec


def camera_main(cfg: Dict[str, Any]) -> int:
    """The camera process: publish, count, time; one JSON line on stdout at the end."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from std_msgs.msg import Header

    from da3_ros.msg import Keyframe
    from da3_ros.ros.conversions import array_to_image, intrinsics_to_camera_info, ns_to_stamp
    from da3_ros.synthetic.sequence import load_sequence
    from nav_msgs.msg import Odometry, Path as PathMsg
    from tf2_msgs.msg import TFMessage

    seq = load_sequence(cfg["seq_dir"])
    rclpy.init()
    node = rclpy.create_node("da3_bench_camera")
    image_pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    header = Header(frame_id="camera_optical_frame")
    images = [array_to_image(np.ascontiguousarray(img), "rgb8", header) for img in seq.images]
    info = intrinsics_to_camera_info(seq.intrinsics, seq.width, seq.height, header)
    lock = threading.Lock()
    arrivals: Dict[str, Dict[int, float]] = {name: {} for name in COUNTED.values()}
    map_messages = [0]
    messages: Dict[str, int] = {}  # every message received, by output
    last_depth = [-1]
    answered = threading.Condition(lock)

    def on_message(name: str, tf: bool):
        def callback(raw: bytes) -> None:
            t = time.monotonic()
            ns = _stamp_of(raw, tf)
            with lock:
                messages[name] = messages.get(name, 0) + 1
                if name == "map":
                    map_messages[0] += 1
                    return
                arrivals[name].setdefault(ns, t)
                if name == "depth":
                    last_depth[0] = max(last_depth[0], ns)
                    answered.notify_all()
        return callback

    types = {"depth": Image, "depth_info": CameraInfo, "confidence": Image, "points": PointCloud2,
             "odometry": Odometry, "path": PathMsg, "tf": TFMessage, "keyframe": Keyframe, "map": PointCloud2}
    # deep: a reader starved for a moment (this process shares the CPU with the node) must lose nothing
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    subs = [node.create_subscription(types[name], topic, on_message(name, name == "tf"),
                                     latched if name == "map" else reliable, raw=True)
            for topic, name in COUNTED.items()]
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    k = [0]
    published: List[List[float]] = []

    def publish() -> int:
        i = k[0]
        k[0] += 1
        ns = T0_NS + i * FRAME_PERIOD_NS
        msg = images[pingpong(i, len(images))]
        msg.header.stamp = ns_to_stamp(ns)
        info.header.stamp = msg.header.stamp
        info_pub.publish(info)
        t = time.monotonic()
        image_pub.publish(msg)
        published.append([ns, t])
        return ns

    def wait_until(pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with lock:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                answered.wait(min(left, 0.05))
        return True

    try:
        # every output matched (the node subscribes to images; we to all it publishes)
        if not _wait(lambda: image_pub.get_subscription_count() > 0
                     and all(s.get_publisher_count() > 0 for s in subs), 60.0):
            raise RuntimeError("the node's topics were not discovered within 60 s")
        t_warm = time.monotonic()
        while len(arrivals["depth"]) < cfg["warmup_answers"]:  # network warm-up (captures), window filling
            if time.monotonic() - t_warm > cfg["warmup_timeout"]:
                raise RuntimeError(f"only {len(arrivals['depth'])} depth images in {cfg['warmup_timeout']} s of warm-up")
            ns = publish()
            wait_until(lambda: last_depth[0] >= ns, 5.0)
        warmup_s = time.monotonic() - t_warm
        time.sleep(0.5)
        phases = []
        for rate in cfg["rates"]:
            with lock:
                for d in arrivals.values():
                    d.clear()
                map_messages[0] = 0
            published.clear()
            start = time.monotonic()
            if rate == "max":
                while time.monotonic() - start < cfg["seconds"]:
                    wait_until(lambda: sum(1 for ns, _ in published[-8:] if ns > last_depth[0]) < cfg["max_in_flight"],
                               1.0)
                    publish()
            else:
                period = 1.0 / float(rate)
                for i in range(int(round(cfg["seconds"] * float(rate)))):
                    delay = start + i * period - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    publish()
            last = published[-1][0]
            wait_until(lambda: last_depth[0] >= last, 3.0)  # the last frame (or give it up as dropped)
            end = time.monotonic()
            # the messages published after each depth image (TF, points, ...) of the frames answered
            wait_until(lambda: all(ns in arrivals[n] for ns in arrivals["depth"] for n in ("tf", "odometry", "points")),
                       3.0)
            with lock:
                phases.append({"name": f"{rate} Hz" if rate != "max" else "max", "rate": rate, "start": start,
                               "end": end, "published": [list(p) for p in published],
                               "arrivals": {n: dict(d) for n, d in arrivals.items()}, "map_messages": map_messages[0]})
            time.sleep(0.5)
        print(json.dumps({"warmup_s": warmup_s, "phases": phases, "messages": messages}), flush=True)
        code = 0
    except Exception:  # noqa: BLE001 - said before the process goes, whatever it was
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # a measuring process with DDS threads still running: leave without unwinding them
    os._exit(code)


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


# ---------------------------------------------------------------- report


def table(results: Sequence[Dict[str, Any]]) -> List[str]:
    """The end-to-end table (markdown): one row per variant and phase."""
    lines = ["| model | device | input | FPS | published / answered / dropped | latency p50 / p99 / max (ms) | "
             "stages, mean ms: " + " + ".join(STAGES) + " | gpu (ms) | host per frame (ms) | map insert (ms, at points) | "
             "captures after warm-up | received depth / info / tf / odom / points / conf / kf / map |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | - | - | error: {r['error']} |" + " |" * 8)
            continue
        maps = [ms for ms, _, _ in r["map_log"]]
        map_cell = (f"{np.median(maps):.1f} (up to {max(n for _, _, n in r['map_log']):,})" if maps else "-")
        for p in r["phases"]:
            st = p["stages_mean_ms"]
            host = [f["host_ms"] for f in r["frames"] if f["phase"] == p["name"]]
            c = p["received"]
            gpu = "-" if p["gpu_mean_ms"] is None else f"{p['gpu_mean_ms']:.1f}"
            lines.append(
                f"| {r['variant']} | {r['device']} | {p['name']} | {p['fps']:.1f} | {p['published']} / {p['answered']} / "
                f"{p['dropped']} | {p['latency_ms']['p50']:.1f} / {p['latency_ms']['p99']:.1f} / "
                f"{p['latency_ms']['max']:.1f} | " + " + ".join(f"{st[k]:.1f}" for k in STAGES) +
                f" | {gpu} | {np.median(host) if host else float('nan'):.1f} | {map_cell} | {r['captures_after_warmup']} | "
                f"{c['depth']} / {c['depth_info']} / {c['tf']} / {c['odometry']} / {c['points']} / {c['confidence']} / "
                f"{c['keyframe']} / {c['map']} |")
    return lines


def write_outputs(results: Sequence[Dict[str, Any]], out: Path) -> List[Path]:
    """bench_node.json, frames.csv, map.csv and (with matplotlib) cost_vs_map.png."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    frames = [f for r in results for f in r.get("frames", [])]
    if frames:
        keys = list(frames[0])
        path = out / "frames.csv"
        path.write_text(",".join(keys) + "\n" + "".join(",".join(str(f[k]) for k in keys) + "\n" for f in frames))
        written.append(path)
    path = out / "map.csv"
    path.write_text("variant,insert_ms,frames,map_points\n" + "".join(
        f"{r['variant']},{ms:.3f},{n},{size}\n" for r in results for ms, n, size in r.get("map_log", [])))
    written.append(path)
    path = out / "bench_node.json"
    path.write_text(json.dumps([{k: v for k, v in r.items() if k != "frames"} for r in results], indent=1))
    written.append(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in results:
        f = [x for x in r.get("frames", [])]
        if f:
            ax.scatter([x["map_points"] for x in f], [x["host_ms"] for x in f], s=6, label=f"{r['variant']}: host per frame")
        if r.get("map_log"):
            ax.scatter([n for _, _, n in r["map_log"]], [ms for ms, _, _ in r["map_log"]], s=6, marker="x",
                       label=f"{r['variant']}: map insert")
    ax.set_xlabel("map points")
    ax.set_ylabel("ms")
    ax.set_title("da3_node: per-frame cost against map size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    path = out / "cost_vs_map.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="da3_ros bench-node", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["oracle", "da3-small", "da3-large"],
                   help="oracle, a DA3 variant (random weights: da3-small, da3-large, ...) or a node `model` value")
    p.add_argument("--rates", nargs="+", default=["30", "60", "max"], help="input rates in Hz, or max")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each rate's phase")
    p.add_argument("--size", default="640x480", help="camera WxH")
    p.add_argument("--frames", type=int, default=48, help="rendered frames (played forwards and backwards)")
    p.add_argument("--warmup-answers", type=int, default=16, help="depth images before timing (warm-up, window fill)")
    p.add_argument("--warmup-timeout", type=float, default=300.0, help="seconds allowed for the warm-up")
    p.add_argument("--max-in-flight", type=int, default=2, help="`max`: images published and not yet answered")
    p.add_argument("--map-prefill", type=int, default=0, help="old voxels put in the map before the run")
    p.add_argument("--domain-id", type=int, default=0, help="ROS_DOMAIN_ID (0: one of 120..219 from the pid)")
    p.add_argument("--out", default="bench_node_out", help="directory for the CSVs, JSON and plot")
    return p


def _check(a) -> None:
    from da3_ros.usage import UsageError, output_directory

    for r in a.rates:
        if r != "max":
            try:
                ok = float(r) > 0
            except ValueError:
                ok = False
            if not ok:
                raise UsageError(f"--rates {r!r}: a rate in Hz above 0, or max")
    try:
        w, h = (int(v) for v in a.size.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {a.size!r}: WxH in pixels, e.g. 640x480") from None
    for bad, words in ((w < 16 or h < 16, f"--size {a.size!r}: at least 16x16"),
                       (not a.seconds > 0, f"--seconds {a.seconds}: above 0"),
                       (a.frames < 2, f"--frames {a.frames}: at least 2"),
                       (a.warmup_answers < 1, f"--warmup-answers {a.warmup_answers}: at least 1"),
                       (a.max_in_flight < 1, f"--max-in-flight {a.max_in_flight}: at least 1"),
                       (not 0 <= a.domain_id <= 232, f"--domain-id {a.domain_id}: 0 (automatic) or 1..232")):
        if bad:
            raise UsageError(words)
    for spec in a.variants:
        _check_variant(spec)
    output_directory(a.out, overwrite=True)  # the bench rewrites its own files there


def _check_variant(spec: str) -> None:
    """Refuse, before anything renders or loads, a variant no loader can take."""
    from da3_ros.model.config import VARIANTS
    from da3_ros.usage import UsageError
    from da3_ros.weights import hub_unavailable, looks_like_hub_id

    accepted = (f"oracle, a DA3 architecture with random weights ({', '.join(sorted(VARIANTS))}), default, "
                "random:<architecture>, a hub id or a local checkpoint")
    name = spec[len(RANDOM_PREFIX):] if spec.startswith(RANDOM_PREFIX) else spec
    if spec in ("oracle", "default"):
        return
    if spec.startswith("oracle:"):  # the node's oracle on a synthetic sequence folder
        if not Path(spec[len("oracle:"):]).is_dir():
            raise UsageError(f"--variants {spec!r}: no such sequence folder")
        return
    if spec.startswith(RANDOM_PREFIX) or spec.startswith(("da3-", "da3_")):
        if name not in VARIANTS:
            raise UsageError(f"--variants {spec!r}: unknown architecture; accepted: {accepted}")
        return
    if looks_like_hub_id(spec):
        reason = hub_unavailable(spec)
        if reason:
            raise UsageError(f"--variants {spec!r}: {reason}")
        return
    if not Path(os.path.expanduser(spec)).exists():
        raise UsageError(f"--variants {spec!r}: no such checkpoint; accepted: {accepted}")


@one_line_errors("da3_ros bench-node")
def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--camera-process"]:
        return camera_main(json.loads(argv[1]))
    a = build_parser().parse_args(argv)
    _check(a)
    from .dds import keep_on_loopback

    env = dict(keep_on_loopback(os.environ, a.domain_id or 120 + os.getpid() % 100))  # before rclpy: the node too
    from da3_ros.synthetic import make_sequence
    from da3_ros.synthetic.sequence import write_sequence

    w, h = (int(v) for v in a.size.lower().split("x"))
    device = None
    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else None
    except ImportError:
        pass
    print(f"[bench-node] ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} (loopback only); rendering {a.frames} frames {w}x{h}",
          flush=True)
    seq = make_sequence("orbit", a.frames, w, h, device=device)
    results = []
    with tempfile.TemporaryDirectory(prefix="da3_bench_node_") as tmp:
        seq_dir = write_sequence(seq, Path(tmp) / "seq", depth_png=False)
        for spec in a.variants:
            try:
                r = run_variant(spec, seq, seq_dir, a, env, log=lambda m: print(m, flush=True))
            except Exception as exc:  # noqa: BLE001 - one variant's failure (out of memory, ...) keeps the others
                r = {"variant": spec, "error": f"{type(exc).__name__}: {exc}"}
                print(f"[{spec}] FAILED: {r['error']}", flush=True)
            results.append(r)
            _free_cuda()
            written = write_outputs(results, Path(a.out))
    print()
    print(f"da3_node end to end over loopback DDS, {w}x{h} rgb8 + CameraInfo, node defaults (every output subscribed, "
          f"map on), {a.seconds:g} s per input rate:")
    print("\n".join(table(results)))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0 if all("error" not in r for r in results) else 1


def _free_cuda() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
