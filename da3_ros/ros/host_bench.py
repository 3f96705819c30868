"""`python -m da3_ros.ros.host_bench`: the node's host work per frame, on the CPU.

The network is replaced by the exact oracle (`da3_ros.synthetic.OracleModel`
on a rendered sequence), so what is timed is everything else the node does
for an answered frame, short of DDS:

  decode    the image message -> RGB (`FramePipeline.to_frame`)
  stream    the streaming core (`Streamer.push`) less the network's own calls
            (the oracle's encode/predict), of which `align` is the placement of
            the window in the world (`stream.world.align_window`)
  outputs   the messages of every per-frame output (`FramePipeline.build`:
            depth, confidence, camera_info, points, odometry, TF, keyframe;
            the path goes out on its own timer, every `path_publish_period`)
  total     the answer path: decode + stream + outputs (what stands between
            an image and its depth, TF and odometry)
  map       the map work the node does on its map thread after the frame's
            messages are out (`FramePipeline.insert_map`), per answered frame:
            not on the answer path, reported beside it

at the node's defaults (window 8, every output switched on and subscribed,
map on), for a 640x480 camera, with the world map held at a given size
(pre-filled with voxels away from the scene; capped there, so every insert
also evicts). Times are the process's CPU time (`time.process_time`; run
with OMP_NUM_THREADS=1): on a shared machine wall time mostly measures the
neighbours (`--wall` for wall time). It also times the map alone (`map_insert_cost`: ms per insert of
one keyframe's points at map sizes 10k .. 2M) and the map cloud the node
publishes every `map_publish_period`. Numbers, not pass/fail: CPU timings
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from da3_ros.ros.conversions import array_to_image, intrinsics_to_camera_info, ns_to_stamp
from da3_ros.ros.frame_pipeline import FramePipeline
from da3_ros.ros.params import default_config
from da3_ros.stream import world as stream_world
from da3_ros.stream.world_map import VoxelMap
from std_msgs.msg import Header

DEFAULT_MAP_SIZES = (20_000, 200_000)
DEFAULT_INSERT_SIZES = (10_000, 100_000, 500_000, 2_000_000)


#: the clock of every timing here (main(--wall) switches to time.perf_counter)
now = time.process_time


class _Clock:
    """Adds up the seconds spent inside wrapped calls."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            t0 = now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += now() - t0
        return timed


class _TimedModel:
    """A WindowModel passing through to `model`, adding up the time of its calls
    (the network's share, taken out of the host cost)."""

    def __init__(self, model, clock: _Clock):
        self._model, self.metric, self.name = model, model.metric, model.name
        self.encode = clock.wrap(model.encode)
        self.predict = clock.wrap(model.predict)


def _prefill(vmap: VoxelMap, n: int, seed: int = 0) -> None:
    """n voxels of old points far below the scene (tick 0: the first to be evicted)."""
    if n <= 0:
        return
    side = int(np.ceil(np.sqrt(n)))
    ij = np.stack(np.unravel_index(np.arange(n), (side, side)), 1)
    xyz = np.column_stack([(ij + 0.5) * vmap.voxel_size, np.full(n, -1000.0)])
    rgb = np.random.default_rng(seed).integers(0, 256, (n, 3))
    vmap.insert(xyz, rgb, np.full(n, 2.0, np.float32), 0)


@dataclass
class FrameCost:
    map_points: int
    width: int
    height: int
    frames: int
    #: ms per answered frame, per stage (lists over the timed frames)
    stages: Dict[str, List[float]] = field(default_factory=dict)
    map_cloud_ms: float = float("nan")
    map_size_end: int = 0
    keyframes: int = 0

    def summary(self) -> Dict[str, Dict[str, float]]:
        return {k: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)), "mean": float(np.mean(v))}
                for k, v in self.stages.items()}


def frame_cost(seq, map_points: int, warmup: int = 8) -> FrameCost:
    """Host cost per answered frame of `seq` (a SyntheticSequence) through the
    node's FramePipeline with the oracle, the map held at `map_points`."""
    from da3_ros.synthetic import OracleModel

    clock, align = _Clock(), _Clock()
    model = _TimedModel(OracleModel(seq), clock)
    cfg = default_config(map_max_points=int(map_points))
    pipe = FramePipeline(model, cfg, warn=lambda text: None, map_deferred=True)
    wanted = pipe.switched_on | {"map"}
    streamer = pipe.streamer
    header = Header(frame_id="camera_optical_frame")
    info = intrinsics_to_camera_info(seq.intrinsics, seq.width, seq.height, header)
    pipe.set_camera_info("", info)
    images = [array_to_image(np.ascontiguousarray(img), "rgb8", Header(stamp=ns_to_stamp(int(round(t * 1e9))),
                                                                         frame_id="camera_optical_frame"))
              for img, t in zip(seq.images, seq.stamps)]
    out = FrameCost(int(map_points), seq.width, seq.height, 0,
                    {k: [] for k in ("total", "decode", "stream", "align", "outputs", "map")})
    saved = stream_world.align_window
    stream_world.align_window = align.wrap(saved)
    try:
        for i, msg in enumerate(images):
            net0, al0 = clock.seconds, align.seconds
            t0 = now()
            frame = pipe.to_frame(msg, compressed=False)
            t1 = now()
            results = pipe.push_frames([frame])
            t2 = now()
            if i == 0:  # the world exists: hold the map at its size from here on
                with streamer.world._lock:
                    _prefill(streamer.world._map, int(map_points) - len(streamer.world._map))
                t2 = now()
            for r in results:
                pipe.build(r, wanted)
                out.keyframes += int(r.keyframe)
            t3 = now()
            pipe.insert_map(results)  # the node's map thread, after the messages
            t4 = now()
            if i < warmup or not results:
                continue
            net = clock.seconds - net0
            ms = lambda s: 1e3 * s  # noqa: E731
            out.stages["decode"].append(ms(t1 - t0))
            out.stages["stream"].append(ms(t2 - t1 - net) / len(results))
            out.stages["align"].append(ms(align.seconds - al0) / len(results))
            out.stages["outputs"].append(ms(t3 - t2) / len(results))
            out.stages["total"].append(ms(t3 - t0 - net) / len(results))
            out.stages["map"].append(ms(t4 - t3) / len(results))
            out.frames += len(results)
    finally:
        stream_world.align_window = saved
    t0 = now()
    pipe.map_cloud(ns_to_stamp(0))
    out.map_cloud_ms = 1e3 * (now() - t0)
    out.map_size_end = streamer.map_size
    return out


def map_insert_cost(sizes: Sequence[int] = DEFAULT_INSERT_SIZES, inserts: int = 30, voxel: float = 0.05,
                    grid: tuple = (120, 160), seed: int = 0) -> Dict[int, Dict[str, float]]:
    """ms per `VoxelMap.insert` of one keyframe's points (a 160x120 grid: a 640x480
    camera at the map's pixel stride 4) with the map full at each size: each
    frame looks at a wall from a camera that slides 5 cm per frame, so most of
    its voxels exist already and the rest are new (and as many old ones go)."""
    rng = np.random.default_rng(seed)
    h, w = grid
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    res: Dict[int, Dict[str, float]] = {}
    for size in sizes:
        vmap = VoxelMap(voxel, int(size))
        _prefill(vmap, int(size))
        times = []
        for i in range(inserts + 3):
            z = 3.0 + 0.3 * np.sin(u / 17.0) * np.cos(v / 13.0) + 0.01 * rng.standard_normal((h, w))
            x = (u - w / 2) / (0.8 * w) * z + 0.05 * i  # f = 0.8 x width, as the synthetic camera
            y = (v - h / 2) / (0.8 * w) * z
            xyz = np.stack([x, y, z], -1).reshape(-1, 3)
            rgb = rng.integers(0, 256, (h * w, 3))
            conf = rng.uniform(1.0, 5.0, h * w).astype(np.float32)
            t0 = now()
            vmap.insert(xyz, rgb, conf, i + 1)
            if i >= 3:
                times.append(1e3 * (now() - t0))
        assert len(vmap) == size, (len(vmap), size)
        res[int(size)] = {"median": float(np.median(times)), "mean": float(np.mean(times)),
                          "p90": float(np.percentile(times, 90)), "max": float(np.max(times))}
    return res


def _table(costs: Sequence[FrameCost]) -> List[str]:
    lines = ["| map points | frames | answer path median / p90 | decode | stream | of which align | outputs | "
             "map work (off the answer path) median / p90 | map cloud (per publish) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in costs:
        s = c.summary()
        lines.append(f"| {c.map_points:,} | {c.frames} | {s['total']['median']:.1f} / {s['total']['p90']:.1f} ms | "
                     f"{s['decode']['median']:.1f} | {s['stream']['median']:.1f} | {s['align']['median']:.1f} | "
                     f"{s['outputs']['median']:.1f} | {s['map']['median']:.1f} / {s['map']['p90']:.1f} | "
                     f"{c.map_cloud_ms:.0f} ms |")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m da3_ros.ros.host_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="640x480", help="camera WxH")
    p.add_argument("--frames", type=int, default=60, help="frames streamed (the first --warmup untimed)")
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--map-points", nargs="+", type=int, default=list(DEFAULT_MAP_SIZES))
    p.add_argument("--insert-sizes", nargs="*", type=int, default=list(DEFAULT_INSERT_SIZES),
                   help="map sizes for the map-only insert timing (none: skip)")
    p.add_argument("--sequence", default="orbit")
    p.add_argument("--json", default="", help="also write the numbers here")
    p.add_argument("--wall", action="store_true", help="wall time instead of the process's CPU time")
    a = p.parse_args(argv)
    global now
    now = time.perf_counter if a.wall else time.process_time
    from da3_ros.synthetic import make_sequence

    w, h = (int(v) for v in a.size.lower().split("x"))
    seq = make_sequence(a.sequence, a.frames, w, h)
    costs = [frame_cost(seq, n, a.warmup) for n in a.map_points]
    print(f"host cost per answered {w}x{h} frame (oracle network, every output, ms; {'wall' if a.wall else 'CPU'} "
          "time):")
    print("\n".join(_table(costs)))
    out = {"frames": {c.map_points: c.summary() for c in costs},
           "map_cloud_ms": {c.map_points: c.map_cloud_ms for c in costs}}
    if a.insert_sizes:
        ins = map_insert_cost(a.insert_sizes)
        print("\nVoxelMap.insert of one keyframe (160x120 points), ms:")
        print("| map points | median | mean | p90 | max |\n|---|---|---|---|---|")
        for n, r in ins.items():
            print(f"| {n:,} | {r['median']:.2f} | {r['mean']:.2f} | {r['p90']:.2f} | {r['max']:.2f} |")
        out["map_insert"] = ins
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
