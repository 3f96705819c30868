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
(`da3_ros.stream.Streamer`) over `DA3WindowModel` at the node's defaults (network,
world alignment, map), and the output arrays (NaN-masked depth, optical-frame
point cloud); FPS and latency percentiles. `--profile N`: torch.profiler kernel
tables of N frames of (c) and of its cross-view stage (profile.txt).

    da3_ros bench --variants da3-small da3-large da3-giant --pose-from ray camera --out bench_out

Only torch, numpy and safetensors are needed at import time; the official package
and `da3_ros.model` are imported lazily. Without CUDA it runs on the CPU (tests);
CPU numbers are not the benchmark.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from da3_ros.usage import ArgumentParser, UsageError, one_line_errors

DEFAULT_VARIANTS = ["da3-small", "da3-base", "da3-large", "da3-giant"]
DEFAULT_WINDOWS = [8]
DEFAULT_SIZES = ["504x378"]
#: the node's defaults (da3_ros/ros/params.py): pose_source, window_size, and the network
#: input of a 640x480 camera at process_res 504
NODE_POSE, NODE_WINDOW, NODE_SIZE = "ray", 8, "504x378"
#: (c) vs (b) depth agreement expected under bf16 autocast (fp32: ~1e-5)
REL_TOL = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 2e-2}


# ---------------------------------------------------------------------- helpers
def parse_size(text: str) -> Tuple[int, int]:
    """'504x378' -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="da3_ros bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--windows", nargs="+", type=int, default=DEFAULT_WINDOWS)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in DEFAULT_SIZES],
                   help="network input sizes WxH (default 504x378: a 640x480 camera at process_res 504)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (median, p90)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda", help="cuda, cuda:1, ...; cpu runs the plumbing on the CPU "
                   "(its numbers are not the benchmark)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="auto: bf16 autocast on CUDA (as the official package), fp32 on CPU")
    p.add_argument("--pose-from", nargs="+", default=[NODE_POSE], choices=["ray", "camera"],
                   help="pose sources to run, each for (a), (b) and (c) (default: ray, the node's)")
    p.add_argument("--ray-map", default="quarter", choices=["quarter", "half", "full"],
                   help="(c)'s ray map for ray poses (DA3WindowModel ray_map=; default quarter, the node's)")
    p.add_argument("--no-official", action="store_true", help="skip (a), the official network")
    p.add_argument("--compile", default="auto", choices=["auto", "inductor", "graphs", "staged", "off"],
                   help="(c)'s optimised path (DA3WindowModel compile=): auto = CUDA graphs + torch.compile "
                        "on CUDA, plain on the CPU; off = the plain eager path")
    p.add_argument("--e2e", default="640x480", help="camera size WxH of the end-to-end run ('none': skip)")
    p.add_argument("--e2e-frames", type=int, default=60, help="timed frames of the end-to-end run")
    p.add_argument("--e2e-warmup", type=int, default=12, help="frames streamed before timing (window fill)")
    p.add_argument("--process-res", type=int, default=504, help="process_res of the end-to-end run (node default)")
    p.add_argument("--profile", type=int, default=0, help="torch.profiler over this many frames of (c) (0: off)")
    p.add_argument("--out", default="bench_out", help="directory (or .../bench.json) for bench.json and bench.md")
    p.add_argument("--seed", type=int, default=0)
    return p


def _resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _amp_dtype(precision: str) -> Optional[torch.dtype]:
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Marks on the device timeline (CUDA events) or the host clock (CPU)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.marks: List[Any] = []

    def mark(self) -> None:
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            self.marks.append(e)
        else:
            self.marks.append(time.perf_counter())

    def intervals_ms(self) -> List[float]:
        _sync(self.device)
        m = self.marks
        if self.cuda:
            return [float(m[i].elapsed_time(m[i + 1])) for i in range(len(m) - 1)]
        return [1e3 * (m[i + 1] - m[i]) for i in range(len(m) - 1)]


def _stats(ms: Sequence[float]) -> Dict[str, float]:
    a = np.asarray(ms, dtype=np.float64)
    med = float(np.median(a))
    return {"median_ms": med, "p90_ms": float(np.percentile(a, 90)), "min_ms": float(a.min()),
            "fps": (1e3 / med) if med > 0 else float("inf"), "n": int(a.size)}


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def time_fn(fn: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> Dict[str, Any]:
    """Warm up, then `iters` timed calls (each synchronised); stats + peak memory of the timed calls."""
    for _ in range(warmup):
        fn()
    _reset_peak(device)
    ms = []
    for _ in range(iters):
        _sync(device)
        c = _Clock(device)
        c.mark()
        fn()
        c.mark()
        ms.append(c.intervals_ms()[0])
    out = _stats(ms)
    out["peak_mib"] = _peak_mib(device)
    return out


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _param_mib(net: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in net.parameters()) / 2 ** 20


def _rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.double().cpu(), ref.double().cpu()
    if a.shape != ref.shape:
        return float("nan")
    return float((a - ref).abs().max() / ref.abs().max().clamp_min(1e-12))


# ---------------------------------------------------------------------- models
def official_available() -> Tuple[bool, str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import depth_anything_3.cfg  # noqa: F401
            from depth_anything_3.registry import MODEL_REGISTRY  # noqa: F401
        return True, ""
    except Exception as exc:  # ImportError or a missing dependency of the package
        return False, f"official depth_anything_3 not importable ({type(exc).__name__}: {exc})"


def _stub_pose_align() -> Optional[str]:
    """The official giant builds its 3D-Gaussian adapter, whose module imports `evo` (only for
    pose alignment in the GS branch, never run here: infer_gs=False). Without `evo`, stand in a
    stub for `depth_anything_3.utils.pose_align` so the network can be built."""
    try:
        import depth_anything_3.utils.pose_align  # noqa: F401
        return None
    except ImportError as exc:
        import types

        def _unavailable(*_a, **_k):
            raise RuntimeError("depth_anything_3.utils.pose_align is stubbed by da3_ros bench (evo missing)")

        mod = types.ModuleType("depth_anything_3.utils.pose_align")
        mod.align_poses_umeyama = mod.batch_align_poses_umeyama = _unavailable
        sys.modules[mod.__name__] = mod
        return f"official pose_align stubbed ({exc}); only the unused GS branch needs it"


def build_official(variant: str, seed: int = 0) -> torch.nn.Module:
    """Random-weight official network (as test/model/conftest.py builds it), CPU, eval mode."""
    _stub_pose_align()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from depth_anything_3 import cfg as cfg_mod
        from depth_anything_3.registry import MODEL_REGISTRY

        torch.manual_seed(seed)
        return cfg_mod.create_object(cfg_mod.load_config(MODEL_REGISTRY[variant])).eval()


def load_ported_from(official: torch.nn.Module, variant: str) -> torch.nn.Module:
    """Write the official state dict as a hub-layout dir in a temp dir and load it with `load_model`."""
    from da3_ros.model import load_model, save_hub_layout

    with tempfile.TemporaryDirectory(prefix=f"da3bench_{variant}_") as d:
        save_hub_layout(official.state_dict(), d, variant)
        return load_model(d, "cpu")


def official_forward(net, x: torch.Tensor, amp: Optional[torch.dtype], pose_from: str):
    with torch.inference_mode(), _autocast(x.device, amp):
        return net(x, None, None, [], False, pose_from == "ray", "saddle_balanced")


# ---------------------------------------------------------------------- stages of (c)
def incremental_stages(wm, frames, prev_handles, device: torch.device, iters: int, warmup: int) -> Dict[str, Any]:
    """CUDA-event timings of the parts of (c): encode (upload+preprocess+per-view blocks),
    cross_view (blocks over the window), depth_head (the new frame's depth, resized to native
    size), pose (the pose source for every frame: camera decoder, or ray head + solver),
    metric_branch (nested models only). The host transfer of predict is not a stage here.
    The plain path runs the same model methods as `DA3Net.forward_window`, one after the other."""
    from da3_ros.model.net import NestedDA3Net
    from da3_ros.model.preprocess import map_to_native

    net = wm.net
    nested = isinstance(net, NestedDA3Net)
    main = net.da3 if nested else net
    S = len(prev_handles) + 1
    names = ["encode", "cross_view", "depth_head", "pose"] + (["metric_branch"] if nested else [])
    runs: List[List[float]] = []

    @torch.inference_mode()
    def once() -> List[float]:
        c = _Clock(device)
        c.mark()
        h = wm.encode(frames[-1])
        c.mark()
        cached = [p.tokens for p in prev_handles] + [h.tokens]
        hw = cached[0].image_hw
        if main.cfg.any_view:
            tokens = torch.stack([t.tokens for t in cached])[None]
            sel = torch.stack([t.selector for t in cached])[None]
            views = main.window_views(S, [S - 1], wm.pose_from)
            feats, cam = main.forward_features(tokens, sel, hw, ref_view_strategy=wm.ref_view_strategy,
                                               views=torch.tensor(views, device=tokens.device))
            c.mark()
            d, conf = main.forward_depth([f[:, -1:] for f in feats], hw)
            map_to_native(torch.cat((d[0], conf[0])), h.native_hw)
            c.mark()
            main.forward_pose(feats, cam, hw, wm.pose_from, wm.ray_map)
            c.mark()
        else:  # monocular: no cross-view part, no pose
            c.mark()
            main.forward_window(cached, [S - 1])
            c.mark()
            c.mark()
        if nested:
            net.da3_metric.forward_window([t.metric for t in cached], [S - 1])
            c.mark()
        return c.intervals_ms()

    fast = getattr(wm, "_fast", None)
    if fast is not None and main.cfg.any_view and not nested:
        @torch.inference_mode()  # noqa: F811
        def once() -> List[float]:  # the optimised path: event marks between its stages
            c = _Clock(device)
            c.mark()
            h = wm.encode(frames[-1])
            c.mark()
            hs = list(prev_handles) + [h]
            wm._predict_fast(hs, [S - 1], clock=c.mark)
            return c.intervals_ms()

    for _ in range(warmup):
        once()
    for _ in range(iters):
        _sync(device)
        runs.append(once())
    arr = np.asarray(runs)
    return {n: {"median_ms": float(np.median(arr[:, i])), "p90_ms": float(np.percentile(arr[:, i], 90))}
            for i, n in enumerate(names)}


# ---------------------------------------------------------------------- kernel profile
_KERNEL_KINDS = (  # first match wins; lower-case substrings of kernel names
    ("attention", ("flash", "fmha", "cudnn_generated_fort_native_sdpa", "sdpa", "attention")),
    ("gemm", ("gemm", "nvjet", "xmma_gemm", "cutlass", "cublas", "matmul", "sm90_xmma", "wgmma")),
    ("convolution", ("conv", "implicit", "winograd", "fprop", "dgrad", "xmma")),
    ("triton (inductor-fused)", ("triton",)),
    ("layer norm", ("layer_norm", "layernorm")),
    ("upsample / resize", ("upsample", "interpolate", "bilinear", "bicubic", "area")),
    ("copy / gather / cat", ("copy", "memcpy", "memset", "gather", "index", "cat", "scatter", "transpose")),
    ("reduction / sort / solve", ("reduce", "sort", "topk", "median", "getrf", "getrs", "solve", "trsm", "lu")),
    ("element-wise", ("elementwise", "vectorized", "unrolled", "pointwise")),
)


def _kernel_kind(name: str) -> str:
    low = name.lower()
    for kind, keys in _KERNEL_KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def profile_kernels(fn: Callable[[], Any], n: int, device: torch.device, title: str) -> str:
    """torch.profiler over `n` calls of fn (after one untimed call): per-call GPU kernel time
    by kind and the top kernels. Kernels replayed from CUDA graphs are included (CUPTI)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        fn()
        _sync(device)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(n):
                fn()
            _sync(device)
    kernels: Dict[str, List[float]] = {}
    for ev in prof.events():
        if device.type != "cuda" or str(getattr(ev, "device_type", "")).split(".")[-1] != "CUDA":
            continue
        t = getattr(ev, "device_time", None)
        if t is None:
            t = getattr(ev, "cuda_time", 0.0)
        k = kernels.setdefault(ev.name, [0.0, 0])
        k[0] += float(t) / 1e3
        k[1] += 1
    L = [f"### {title}", ""]
    if not kernels:
        L += ["(no GPU kernels recorded)", ""]
        return "\n".join(L)
    total = sum(v[0] for v in kernels.values()) / n
    launches = sum(v[1] for v in kernels.values()) / n
    L.append(f"GPU kernel time {total:.3f} ms per call, {launches:.0f} kernels per call ({n} calls)")
    L += ["", "| kind | ms per call | share | kernels per call |", "|---|---|---|---|"]
    kinds: Dict[str, List[float]] = {}
    for name, (ms, cnt) in kernels.items():
        k = kinds.setdefault(_kernel_kind(name), [0.0, 0])
        k[0] += ms
        k[1] += cnt
    for kind, (ms, cnt) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        L.append(f"| {kind} | {ms / n:.3f} | {100 * ms / n / total:.1f}% | {cnt / n:.0f} |")
    L += ["", "| kernel (top 25 by time) | kind | ms per call | calls per call |", "|---|---|---|---|"]
    for name, (ms, cnt) in sorted(kernels.items(), key=lambda kv: -kv[1][0])[:25]:
        short = name if len(name) <= 110 else name[:107] + "..."
        L.append(f"| `{short}` | {_kernel_kind(name)} | {ms / n:.3f} | {cnt / n:.1f} |")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------- end to end
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


def end_to_end(net, variant: str, args, device: torch.device, precision: str, pose_from: str,
               log=print) -> Dict[str, Any]:
    """Serial per-frame latency of decode -> network -> world -> output arrays at the node's
    stream defaults, on noise frames of the e2e size (random weights: the content is not the point)."""
    from da3_ros.io.images import decode_image, encode_image
    from da3_ros.runtime.da3_model import DA3WindowModel
    from da3_ros.stream import StreamConfig, Streamer
    from da3_ros.stream.interface import Frame

    w, h = parse_size(args.e2e)
    cfg = StreamConfig()
    wm = DA3WindowModel(net, device=str(device), precision=precision, pose_from=pose_from,
                        process_res=args.process_res, compile=getattr(args, "compile", "auto"))
    t0 = time.perf_counter()
    wm.warmup(w, h, cfg.window_size)
    warm_s = time.perf_counter() - t0
    timed = _TimedModel(wm)
    st = Streamer(timed, cfg)
    rng = np.random.default_rng(args.seed + 1)
    n_total = args.e2e_warmup + args.e2e_frames
    # raw sensor buffers made up front (what a subscriber receives): noise with a smooth drift
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffers = [encode_image(np.roll(base, 3 * i, axis=1), "rgb8") for i in range(n_total)]
    lat, dec_ms, model_ms, world_ms, out_ms, points = [], [], [], [], [], []
    with torch.inference_mode():
        for i, (step, data) in enumerate(buffers):
            t_a = time.perf_counter()
            image = decode_image("rgb8", h, w, step, data)
            t_b = time.perf_counter()
            m0 = timed.seconds
            results = st.push(Frame(i, i / 30.0, image))
            t_c = time.perf_counter()
            n_pts = 0
            for r in results:
                depth = np.where(r.valid_mask(), r.depth, np.float32(np.nan))  # the depth image
                xyz, rgb = r.point_cloud(frame="optical")  # the cloud message's arrays
                n_pts += len(xyz)
                del depth, rgb
            t_d = time.perf_counter()
            if i < args.e2e_warmup:
                continue
            m = timed.seconds - m0
            lat.append(1e3 * (t_d - t_a))
            dec_ms.append(1e3 * (t_b - t_a))
            model_ms.append(1e3 * m)
            world_ms.append(1e3 * (t_c - t_b - m))
            out_ms.append(1e3 * (t_d - t_c))
            points.append(n_pts)
    a = np.asarray(lat)
    res = {"variant": variant, "pose_from": pose_from, "size": args.e2e, "window": cfg.window_size,
           "precision": precision, "process_res": args.process_res, "frames": int(a.size),
           "fps": float(a.size / (a.sum() / 1e3)), "median_ms": float(np.median(a)),
           "p90_ms": float(np.percentile(a, 90)), "max_ms": float(a.max()), "warmup_s": warm_s,
           "parts_median_ms": {k: float(np.median(v)) for k, v in (("decode", dec_ms), ("network", model_ms),
                                                                     ("world", world_ms), ("outputs", out_ms))},
           "points_median": float(np.median(points)), "compile": wm.compile_mode}
    log(f"[{variant}] end to end {args.e2e} pose={pose_from}: {res['fps']:.1f} FPS, median {res['median_ms']:.1f} ms, "
        f"p90 {res['p90_ms']:.1f} ms (network {res['parts_median_ms']['network']:.1f}, world "
        f"{res['parts_median_ms']['world']:.1f}, outputs {res['parts_median_ms']['outputs']:.1f} ms)")
    if getattr(wm, "_fast", None) is not None:
        wm._fast.reset()
    return res


# ---------------------------------------------------------------------- one variant
def _oom_types():
    t = [RuntimeError]
    if hasattr(torch.cuda, "OutOfMemoryError"):
        t.insert(0, torch.cuda.OutOfMemoryError)
    return tuple(t)


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()


def _profile_config(profile_out: List[str], wm, incremental, variant, pose, S, w, h, precision, args, device) -> None:
    title = f"{variant}, pose from {pose}, window {S}, {w}x{h}, {precision}"
    profile_out.append(profile_kernels(incremental, args.profile, device,
                                       f"(c) per frame (CUDA-graph replays): {title}"))
    fast = getattr(wm, "_fast", None)
    if fast is not None and fast._win and fast._enc:
        # each stage's function launched from Python: the same kernels as its graph
        st = next(v for k, v in fast._win.items() if k[0] == S and k[5] == (S - 1,))
        stages = [("encode", next(iter(fast._enc.values()))["stage"]), ("cross_view", st["cross"]),
                  ("depth_head", st["depth"]), ("pose", st["pose"])]
        for sname, stage in stages:
            profile_out.append(profile_kernels(stage.fn, args.profile, device,
                                               f"(c) stage {sname}, run eagerly: {title}"))


def bench_variant(variant: str, args, device: torch.device, precision: str, use_official: bool,
                  log=print, profile_out: Optional[List[str]] = None) -> Tuple[List[Dict[str, Any]], Optional[dict]]:
    from da3_ros.model import load_model
    from da3_ros.model.preprocess import map_to_native, preprocess
    from da3_ros.runtime.da3_model import DA3WindowModel
    from da3_ros.stream.interface import Frame

    amp = _amp_dtype(precision)
    rng = np.random.default_rng(args.seed)
    shapes = [(w, h, S) for (w, h) in args.sizes for S in args.windows]
    configs = [(pose, w, h, S) for pose in args.pose_from for (w, h, S) in shapes]
    frames_of: Dict[Tuple[int, int, int], List[Any]] = {}
    for (w, h, S) in shapes:
        frames_of[(w, h, S)] = [Frame(i, 0.1 * i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                                for i in range(S)]
    process_res = {(w, h): max(w, h) for (w, h) in args.sizes}  # no resize: the given size is the network input
    rows: Dict[tuple, Dict[str, Any]] = {}
    for (pose, w, h, S) in configs:
        rows[(pose, w, h, S)] = {"variant": variant, "pose_from": pose, "window": S, "size": f"{w}x{h}",
                                 "precision": precision, "official": None, "official_note": None, "full": None,
                                 "incremental": None, "stages": None, "check": {}}

    def window_input(shape):
        w, h, _ = shape
        return preprocess([f.image for f in frames_of[shape]], device, process_res[(w, h)])[None]

    # ---- (a) official, then free it before ours goes to the device
    official_depth: Dict[tuple, torch.Tensor] = {}
    t0 = time.perf_counter()
    if use_official:
        official = build_official(variant, args.seed)
        net = load_ported_from(official, variant)
        log(f"[{variant}] official built + state dict loaded into da3_ros.model in {time.perf_counter() - t0:.1f} s")
        official = official.to(device)
        weights_official = _param_mib(official)
        for key in configs:
            pose, shape = key[0], key[1:]
            row = rows[key]
            x = window_input(shape)
            row["processed_hw"] = list(x.shape[-2:])
            try:
                out = official_forward(official, x, amp, pose)
                official_depth[key] = out["depth"][0, -1].float().cpu()
                row["official"] = time_fn(lambda: official_forward(official, x, amp, pose), device,
                                          args.iters, args.warmup)
                row["official"]["weights_mib"] = weights_official
            except _oom_types() as exc:
                if not _is_oom(exc):
                    raise
                row["official_note"] = "out of memory"
            del x
            _free(device)
            log(f"[{variant}] {pose} S={key[3]} {row['size']}: (a) official {_fmt(row['official'])}")
        del official
        _free(device)
    else:
        net = load_model(f"random:{variant}", "cpu")
        for key in configs:
            rows[key]["official_note"] = args.official_reason

    # ---- (b) full forward and (c) incremental, same weights; one adapter per pose source
    for pose in args.pose_from:
        wm = DA3WindowModel(net, device=str(device), precision=precision, pose_from=pose,
                            compile=getattr(args, "compile", "auto"), ray_map=getattr(args, "ray_map", "quarter"))
        if getattr(wm, "_fast", None) is not None:
            wm._fast.log = lambda m: log(f"[{variant}] {m}")  # kernel choices, capture failures
        net = wm.net
        weights = _param_mib(net)
        for key in [k for k in configs if k[0] == pose]:
            _, w, h, S = key
            row = rows[key]
            frames = frames_of[(w, h, S)]
            wm.process_res = process_res[(w, h)]
            try:
                x = window_input((w, h, S))
                row["processed_hw"] = list(x.shape[-2:])

                def full():
                    with torch.inference_mode():
                        return net(x, pose_from=pose)

                ref = full()
                ref_depth = ref["depth"][0, -1].float()
                del ref
                if key in official_depth:
                    row["check"]["b_vs_a_max_rel_err"] = _rel_err(ref_depth, official_depth[key])
                row["full"] = time_fn(full, device, args.iters, args.warmup)
                row["full"]["weights_mib"] = weights
                del x
                _free(device)

                # (c): start-up warm-up (compile + CUDA-graph capture of this window's shapes), then
                # the window's older frames are cached, each step encodes the new frame and predicts
                t_w = time.perf_counter()
                wm.warmup(w, h, S, all_sizes=False)
                warm_s = time.perf_counter() - t_w
                log(f"[{variant}] {pose} S={S} {w}x{h}: (c) warm-up ({wm.compile_mode}) {warm_s:.1f} s")
                fast = getattr(wm, "_fast", None)
                if fast is not None and fast.tuner.choice:
                    log(f"[{variant}] attention kernels: " + ", ".join(
                        f"q{k[0]}->{b or 'default'}" for k, b in fast.tuner.choice.items()))
                prev = [wm.encode(f) for f in frames[:-1]]

                def incremental():
                    hnew = wm.encode(frames[-1])
                    return wm.predict(frames, prev + [hnew], [S - 1])

                pred = incremental()
                d_c = torch.from_numpy(pred.depth[S - 1])
                d_b = map_to_native(ref_depth[None], (h, w))[0].cpu()
                err = _rel_err(d_c, d_b)
                tol = REL_TOL[precision]
                row["check"].update({"c_vs_b_max_rel_err": err, "tolerance": tol, "ok": bool(err <= tol)})
                if not err <= tol:
                    log(f"[{variant}] WARNING {pose} S={S} {w}x{h}: incremental depth differs from the full "
                        f"forward (max rel err {err:.3g} > {tol})")
                del pred, ref_depth
                row["incremental"] = time_fn(incremental, device, args.iters, args.warmup)
                row["incremental"]["weights_mib"] = weights
                row["incremental"]["cache_mib"] = sum(p.nbytes for p in prev) / 2 ** 20
                row["incremental"]["warmup_s"] = warm_s
                row["incremental"]["compile"] = wm.compile_mode
                row["stages"] = incremental_stages(wm, frames, prev, device, args.iters, args.warmup)
                if profile_out is not None and args.profile > 0:
                    try:
                        _profile_config(profile_out, wm, incremental, variant, pose, S, w, h, precision, args, device)
                    except Exception as exc:  # a profile is a diagnostic: never lose the timings for it
                        log(f"[{variant}] profile failed: {type(exc).__name__}: {exc}")
                del prev
            except _oom_types() as exc:
                if not _is_oom(exc):
                    raise
                row["check"]["note"] = "out of memory"
            if getattr(wm, "_fast", None) is not None:
                wm._fast.reset()  # one configuration's graphs at a time (a node holds only its own)
            _free(device)
            a, b, c = row["official"], row["full"], row["incremental"]
            if c:
                row["ratio_a_over_c"] = a["median_ms"] / c["median_ms"] if a else None
                row["ratio_b_over_c"] = b["median_ms"] / c["median_ms"] if b else None
            log(f"[{variant}] {pose} S={S} {w}x{h}: (b) full {_fmt(b)} | (c) incremental {_fmt(c)} | "
                f"c-vs-b rel err {row['check'].get('c_vs_b_max_rel_err', float('nan')):.2e}")
        del wm
        _free(device)
    e2e = None
    if str(args.e2e).lower() != "none":
        try:
            e2e = end_to_end(net, variant, args, device, precision, args.pose_from[0], log)
        except _oom_types() as exc:
            if not _is_oom(exc):
                raise
            e2e = {"variant": variant, "note": "out of memory"}
    del net
    _free(device)
    return [rows[k] for k in configs], e2e


# ---------------------------------------------------------------------- report
def _fmt(m: Optional[Dict[str, Any]]) -> str:
    if not m:
        return "-"
    return f"{m['median_ms']:.1f}/{m['p90_ms']:.1f} ms"


def _num(v: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def _is_node_default(r: Dict[str, Any]) -> bool:
    return r["pose_from"] == NODE_POSE and r["window"] == NODE_WINDOW and r["size"] == NODE_SIZE


def _result_table(rows: Sequence[Dict[str, Any]]) -> List[str]:
    L = ["| variant | pose from | S | size WxH | precision | (a) ms med/p90 | (b) ms med/p90 | (c) ms med/p90 "
         "| FPS (a)/(b)/(c) | peak MiB (a)/(b)/(c) | (a)/(c) | (b)/(c) | rel err (c) vs (b) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b, c = r["official"], r["full"], r["incremental"]

        def ms(m, note=None):
            return f"{m['median_ms']:.1f} / {m['p90_ms']:.1f}" if m else (note or "-")

        fps = " / ".join(_num(m["fps"] if m else None) for m in (a, b, c))
        peak = " / ".join(_num(m["peak_mib"] if m else None, "{:.0f}") for m in (a, b, c))
        ra = _num(r.get("ratio_a_over_c"), "{:.2f}x")
        rb = _num(r.get("ratio_b_over_c"), "{:.2f}x")
        err = _num(r["check"].get("c_vs_b_max_rel_err"), "{:.1e}")
        a_note = "n/a" if r.get("official_note") and "not importable" in str(r.get("official_note")) else (
            "skipped" if r.get("official_note") else None)
        if r.get("official_note") == "out of memory":
            a_note = "OOM"
        L.append(f"| {r['variant']} | {r['pose_from']} | {r['window']} | {r['size']} | {r['precision']} "
                 f"| {ms(a, a_note)} | {ms(b)} | {ms(c)} | {fps} | {peak} | {ra} | {rb} | {err} |")
    return L


def render_markdown(report: Dict[str, Any]) -> str:
    L = ["# da3_ros bench", "",
         f"- command: `{report['command']}`",
         f"- device: {report['device_name']} ({report['device']})",
         f"- torch {report['torch']}, CUDA {report['cuda']}, Python {report['python']}",
         f"- date: {report['date']}",
         f"- precision: {report['precision']}, pose from: {', '.join(report['pose_from'])}, "
         f"iters {report['iters']} (warm-up {report['warmup']})",
         f"- (c) path: compile={report.get('compile', 'off')}, ray map {report.get('ray_map', 'quarter')}"]
    for n in report["notes"]:
        L.append(f"- NOTE: {n}")
    legend = ("(a) official network on the whole window; (b) da3_ros.model forward on the whole window; "
              "(c) incremental: encode(new frame) + predict(window, decode=[newest]); all three with the row's "
              "pose source ((a), (b): full ray maps of every view; (c): the node's ray map, --ray-map). "
              "Times per new frame, median/p90 ms; FPS = 1000/median; peak = max allocated GPU memory "
              "(weights included). (a), (b): network only on the preprocessed window; (c): from the uint8 "
              "frame to host numpy (includes upload, preprocessing and transfer).")
    default_rows = [r for r in report["results"] if _is_node_default(r)]
    other_rows = [r for r in report["results"] if not _is_node_default(r)]
    L += ["", f"## The node's defaults: pose from {NODE_POSE}, window {NODE_WINDOW}, {NODE_SIZE} "
              f"(a 640x480 camera), {report['precision']}", "", legend, ""]
    L += _result_table(default_rows) if default_rows else ["(no configuration at the node's defaults in this run)"]
    if other_rows:
        L += ["", "## Other configurations", ""] + _result_table(other_rows)
    L += ["", "## Where the time of (c) goes (median ms; CUDA events, host clock on CPU)", "",
          "encode = upload + preprocess + per-view blocks of the new frame; cross_view = blocks over the "
          "window (head inputs of the views that need them); depth_head = depth head on the new frame incl. "
          "the resize to native size; pose = the pose source for every frame (camera decoder, or ray head "
          "at the --ray-map resolution + solver); metric = nested metric branch. "
          "Optimised path (compile != off): the stages are its consecutive CUDA-graph replays and (c) total "
          "adds the one host transfer; plain path: the stages are re-run separately.", "",
          "| variant | pose from | S | size | encode | cross_view | depth_head | pose | metric | (c) total |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in default_rows + other_rows:
        st = r["stages"] or {}
        g = [_num(st[k]["median_ms"], "{:.2f}") if k in st else "-"
             for k in ("encode", "cross_view", "depth_head", "pose", "metric_branch")]
        tot = _num(r["incremental"]["median_ms"], "{:.2f}") if r["incremental"] else "-"
        L.append(f"| {r['variant']} | {r['pose_from']} | {r['window']} | {r['size']} | " + " | ".join(g)
                 + f" | {tot} |")
    e2e = [e for e in report.get("e2e", []) if e]
    if e2e:
        L += ["", "## End to end, per frame, serial (everything the node does but DDS)", "",
              "A raw rgb8 buffer decoded by `da3_ros.io.images`, pushed through `da3_ros.stream.Streamer` "
              "(node defaults: window 8, stride 1, 2 shared keyframes decoded again for the alignment, map "
              "from keyframes) over `DA3WindowModel` warmed up for the size, then the output arrays of each "
              "answered frame (NaN-masked depth image, optical-frame point cloud). Random weights on noise "
              "frames. FPS = frames / total time; network = the adapter's encode + predict (host wall time, "
              "GPU work included); world = the rest of the streaming core (alignment, keyframes, map).", "",
              "| variant | pose from | camera | window | precision | FPS | latency ms med / p90 / max "
              "| decode | network | world | outputs | points/frame |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in e2e:
            if "note" in e:
                L.append(f"| {e['variant']} | {e['note']} |")
                continue
            p = e["parts_median_ms"]
            L.append(f"| {e['variant']} | {e['pose_from']} | {e['size']} | {e['window']} | {e['precision']} "
                     f"| {e['fps']:.1f} | {e['median_ms']:.1f} / {e['p90_ms']:.1f} / {e['max_ms']:.1f} "
                     f"| {p['decode']:.2f} | {p['network']:.1f} | {p['world']:.1f} | {p['outputs']:.1f} "
                     f"| {e['points_median']:.0f} |")
    return "\n".join(L) + "\n"


def _out_paths(out: str) -> Tuple[Path, Path]:
    p = Path(out)
    if p.suffix == ".json":
        return p, p.with_suffix(".md")
    return p / "bench.json", p / "bench.md"


@one_line_errors("da3_ros bench")
def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or any(s < 1 for s in args.windows):
        print("da3_ros bench: --iters >= 1, --warmup >= 0, windows >= 1", file=sys.stderr)
        return 2
    if str(args.e2e).lower() != "none":
        try:
            parse_size(args.e2e)
        except argparse.ArgumentTypeError as exc:
            print(f"da3_ros bench: --e2e: {exc}", file=sys.stderr)
            return 2
    args.pose_from = list(dict.fromkeys(args.pose_from))
    notes: List[str] = []
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UsageError(f"--device {args.device!r} is not a torch device: cuda, cuda:<n> or cpu") from None
    if device.type == "cuda" and not torch.cuda.is_available():  # before anything is written or imported
        raise UsageError(f"--device {args.device}: no CUDA GPU here (torch {torch.__version__}"
                         f"{', built without CUDA' if torch.version.cuda is None else ''}); the benchmark needs one "
                         "(--device cpu runs it on the CPU, whose numbers are not the benchmark)")
    if device.type != "cuda":
        notes.append("CPU run: these numbers are NOT the benchmark (it is meant for a CUDA GPU)")
    for n in notes:
        print(f"da3_ros bench: NOTE: {n}", flush=True)
    precision = _resolve_precision(args.precision, device)
    use_official = not args.no_official
    args.official_reason = "--no-official"
    if use_official:
        # the official package prints an INFO line per network it builds (read once, at its import)
        os.environ.setdefault("DA3_LOG_LEVEL", "WARN")
        ok, reason = official_available()
        if not ok:
            use_official = False
            args.official_reason = reason
            notes.append(f"(a) skipped: {reason}")
            print(f"da3_ros bench: NOTE: {reason}; (a) is skipped", flush=True)
    from da3_ros.model import canonical_name

    try:
        variants = [canonical_name(v) for v in args.variants]
    except KeyError as exc:
        print(f"da3_ros bench: {exc.args[0]}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 matmuls stay fp32 (the official default)
    else:
        name = platform.processor() or platform.machine()
        name = f"CPU {name} ({torch.get_num_threads()} threads)"
    report: Dict[str, Any] = {
        "command": "da3_ros bench " + " ".join(shlex.quote(a) for a in argv),
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision, "pose_from": args.pose_from, "compile": args.compile, "ray_map": args.ray_map,
        "iters": args.iters,
        "warmup": args.warmup, "official": use_official, "notes": notes, "results": [], "e2e": [],
    }
    json_path, md_path = _out_paths(args.out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    profile_path = json_path.parent / "profile.txt"
    profiles: List[str] = []
    torch.manual_seed(args.seed)
    for v in variants:
        rows, e2e = bench_variant(v, args, device, precision, use_official, log=lambda m: print(m, flush=True),
                                  profile_out=profiles)
        report["results"].extend(rows)
        report["e2e"].append(e2e)
        json_path.write_text(json.dumps(report, indent=1))  # partial results survive a later failure
        md_path.write_text(render_markdown(report))
        if profiles:
            profile_path.write_text(f"# kernel profiles ({name}, torch {torch.__version__})\n\n" + "\n".join(profiles))
    md = render_markdown(report)
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(md)
    print()
    print(md)
    for r in report["results"]:
        ra, rb = r.get("ratio_a_over_c"), r.get("ratio_b_over_c")
        print(f"{r['variant']} {r['pose_from']} S={r['window']} {r['size']}: (a)/(c) = {_num(ra, '{:.2f}x')}, "
              f"(b)/(c) = {_num(rb, '{:.2f}x')}")
    bad = [r for r in report["results"] if r["check"].get("ok") is False]
    print(f"wrote {json_path} and {md_path}" + (f" and {profile_path}" if profiles else ""))
    if bad:
        print(f"WARNING: {len(bad)} configuration(s) where (c) != (b) beyond tolerance", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
