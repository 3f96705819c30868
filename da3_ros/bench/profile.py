"""Where the time of (c) goes: per-stage CUDA-event timings of the incremental
path, and torch.profiler kernel tables (`--profile N`)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List

import numpy as np
import torch

from .common import _Clock, _sync


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

    @torch.inference_mode()
    def once() -> List[float]:
        c, h = _encoded(wm, frames[-1], device)
        cached = [p.tokens for p in prev_handles] + [h.tokens]
        hw = cached[0].image_hw
        if main.cfg.any_view:
            tokens = torch.stack([t.tokens for t in cached])[None]
            sel = torch.stack([t.selector for t in cached])[None]
            views = main.window_views(S, [S - 1], wm.pose_source)
            feats, cam = main.forward_features(tokens, sel, hw, reference_strategy=wm.reference_strategy,
                                               views=torch.tensor(views, device=tokens.device))
            c.mark()
            d, conf = main.forward_depth([f[:, -1:] for f in feats], hw)
            map_to_native(torch.cat((d[0], conf[0])), h.native_hw)
            c.mark()
            main.forward_pose(feats, cam, hw, wm.pose_source, wm.ray_map)
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
        once = _fast_stages(wm, frames, prev_handles, device)  # noqa: F811 - the optimised path's stages
    return _stage_stats(once, names, device, iters, warmup)


def _fast_stages(wm, frames, prev_handles, device: torch.device) -> Callable[[], List[float]]:
    """One run of the optimised path with event marks between its stages."""
    S = len(prev_handles) + 1

    @torch.inference_mode()
    def once() -> List[float]:
        c, h = _encoded(wm, frames[-1], device)
        wm._predict_fast(list(prev_handles) + [h], [S - 1], clock=c.mark)
        return c.intervals_ms()
    return once


def _encoded(wm, frame, device: torch.device):
    """(clock with the encode stage marked, the new frame's handle)."""
    c = _Clock(device)
    c.mark()
    h = wm.encode(frame)
    c.mark()
    return c, h


def _stage_stats(once: Callable[[], List[float]], names: List[str], device: torch.device, iters: int,
                 warmup: int) -> Dict[str, Any]:
    for _ in range(warmup):
        once()
    runs: List[List[float]] = []
    for _ in range(iters):
        _sync(device)
        runs.append(once())
    arr = np.asarray(runs)
    return {n: {"median_ms": float(np.median(arr[:, i])), "p90_ms": float(np.percentile(arr[:, i], 90))}
            for i, n in enumerate(names)}


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


def _profile_config(profile_out: List[str], wm, incremental, variant, pose, S, w, h, precision, args, device) -> None:
    title = f"{variant}, pose source {pose}, window {S}, {w}x{h}, {precision}"
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
