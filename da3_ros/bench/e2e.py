"""End to end (`--e2e WxH`): what the node does per frame short of DDS, serially:
decode a raw rgb8 buffer, the streaming session (`da3_ros.stream.Session`, the
one every front end drives) over `DA3WindowModel` at the node's defaults, and
the output arrays; FPS, latency percentiles and where the time goes."""

from __future__ import annotations

import time
from typing import Any, Dict, List

import numpy as np
import torch

from .common import parse_size
from ..stream.settings import SETTINGS


class _TimedModel:
    """A `WindowModel` that passes through to the DA3 adapter and adds up the host wall time
    of its calls (each returns host data, so the GPU work is inside)."""

    def __init__(self, model):
        self.model = model
        self.name, self.metric = model.name, model.metric
        self.seconds = 0.0

    def encode(self, frame):
        t = time.perf_counter()
        try:
            return self.model.encode(frame)
        finally:
            self.seconds += time.perf_counter() - t

    def predict(self, frames, handles, decode, intrinsics=None, c2w=None):
        t = time.perf_counter()
        try:
            return self.model.predict(frames, handles, decode, intrinsics=intrinsics, c2w=c2w)
        finally:
            self.seconds += time.perf_counter() - t


def end_to_end(net, variant: str, args, device: torch.device, precision: str, pose_source: str,
               log=print) -> Dict[str, Any]:
    """Serial per-frame latency of decode -> network -> world -> output arrays at the node's
    stream defaults, on noise frames of the e2e size (random weights: the content is not the point)."""
    from da3_ros.runtime.da3_model import DA3WindowModel
    from da3_ros.stream import Session, StreamConfig

    w, h = parse_size(args.e2e)
    cfg = StreamConfig()
    wm = DA3WindowModel(net, device=str(device), precision=precision, pose_source=pose_source,
                        process_res=args.process_res, compile=getattr(args, "compile", "auto"))
    t0 = time.perf_counter()
    wm.warmup(w, h, cfg.window_size)
    warm_s = time.perf_counter() - t0
    timed = _TimedModel(wm)
    parts = _stream_frames(Session(timed, cfg), timed, w, h, args)
    a = np.asarray(parts.pop("latency"))
    points = parts.pop("points")
    res = {"variant": variant, "pose_source": pose_source, "size": args.e2e, "window": cfg.window_size,
           "precision": precision, "process_res": args.process_res, "frames": int(a.size),
           "fps": float(a.size / (a.sum() / 1e3)), "median_ms": float(np.median(a)),
           "p90_ms": float(np.percentile(a, 90)), "max_ms": float(a.max()), "warmup_s": warm_s,
           "parts_median_ms": {k: float(np.median(v)) for k, v in parts.items()},
           "points_median": float(np.median(points)), "compile": wm.compile_mode}
    log(f"[{variant}] end to end {args.e2e} pose={pose_source}: {res['fps']:.1f} FPS, median {res['median_ms']:.1f} ms, "
        f"p90 {res['p90_ms']:.1f} ms (network {res['parts_median_ms']['network']:.1f}, world "
        f"{res['parts_median_ms']['world']:.1f}, outputs {res['parts_median_ms']['outputs']:.1f} ms)")
    if getattr(wm, "_fast", None) is not None:
        wm._fast.reset()
    return res


def _stream_frames(session, timed: _TimedModel, w: int, h: int, args) -> Dict[str, List[float]]:
    """Per timed frame: latency, decode, network, world, outputs (ms) and the points built."""
    from da3_ros.io.images import decode_image, encode_image
    from da3_ros.stream.interface import Frame

    rng = np.random.default_rng(args.seed + 1)
    n_total = args.e2e_warmup + args.e2e_frames
    # raw sensor buffers made up front (what a subscriber receives): noise with a smooth drift
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffers = [encode_image(np.roll(base, 3 * i, axis=1), "rgb8") for i in range(n_total)]
    out: Dict[str, List[float]] = {k: [] for k in ("latency", "decode", "network", "world", "outputs", "points")}
    with torch.inference_mode():
        for i, (step, data) in enumerate(buffers):
            t_a = time.perf_counter()
            image = decode_image("rgb8", h, w, step, data)
            t_b = time.perf_counter()
            m0 = timed.seconds
            results = session.push(Frame(i, i / 30.0, image))
            t_c = time.perf_counter()
            n_pts = 0
            for r in results:
                depth = np.where(r.valid_mask(), r.depth, np.float32(np.nan))  # the depth image
                # the cloud message's arrays, at the node's default point_decimation
                xyz, rgb = r.point_cloud(frame="optical", stride=SETTINGS["point_decimation"].default)
                n_pts += len(xyz)
                del depth, rgb
            t_d = time.perf_counter()
            if i < args.e2e_warmup:
                continue
            m = timed.seconds - m0
            for key, value in (("latency", t_d - t_a), ("decode", t_b - t_a), ("network", m),
                               ("world", t_c - t_b - m), ("outputs", t_d - t_c)):
                out[key].append(1e3 * value)
            out["points"].append(n_pts)
    return out
