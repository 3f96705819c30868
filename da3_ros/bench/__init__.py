"""`da3_ros bench`: per-new-frame cost of DA3 in a sliding window, on one GPU.

For each variant (random weights), pose source, window size S and input size W x H
it times, in one process and with the SAME weights:

  (a) official  the official `depth_anything_3` network re-run on the whole window
                with the same pose source (network only: the preprocessed window
                is already on the device),
  (b) full      this project's network forward on the whole window (same input;
                official contract: full ray maps when the pose comes from rays),
  (c) incr      the node's incremental path: `DA3WindowModel.encode()` of the new
                uint8 frame (upload + preprocess + per-view blocks) and
                `predict(decode=[newest])` (cross-view blocks over the cached window,
                depth head on the new frame only, pose from the same source for
                every frame - rays: the ray head at a quarter of the official resolution + solver -,
                maps to native size and host transfer).

(a) and (b) exclude upload / preprocessing / host transfer, (c) includes them, so
the ratios (a)/(c) and (b)/(c) are conservative. Per-stage timings of (c) (encode,
cross-view, depth head, pose) come from CUDA events. Before timing, (c)'s depth of
the new frame is checked against (b)'s (and (b)'s against (a)'s). The first table
is the node's default configuration (pose from rays, window 8, 504x378).

End to end (`--e2e WxH`, default 640x480): what the node does per frame short of
DDS, serially: decode a raw rgb8 buffer (`da3_ros.io.images`), the streaming core
(`da3_ros.stream.Session`, the session every front end drives) over `DA3WindowModel` at the node's defaults (network,
world alignment, map), and the output arrays (NaN-masked depth, optical-frame
point cloud); FPS and latency percentiles. `--profile N`: torch.profiler kernel
tables of N frames of (c) and of its cross-view stage (profile.txt).

    da3_ros bench --variants da3-small da3-large da3-giant --pose-source ray camera --out bench_out

Parts: `common` (timing, sizes), `official` (a), `variant` ((a), (b), (c) of one
variant), `profile` (stages of (c), kernel tables), `e2e` (end to end),
`tables` (bench.md), `cli` (the command). Only torch, numpy and safetensors are
needed at import time; the official package
and `da3_ros.model` are imported lazily. Without CUDA it runs on the CPU (tests);
CPU numbers are not the benchmark.
"""

from .cli import _out_paths, build_parser, main
from .common import parse_size
from .official import official_available
from .tables import render_markdown

__all__ = ["build_parser", "main", "official_available", "parse_size", "render_markdown"]
