"""`da3_ros bench`: per-new-frame cost of DA3 in a sliding window, on one GPU.

For each variant (random weights), window size S and input size W x H it times,
in one process and with the SAME weights:

  (a) official  the official `depth_anything_3` network re-run on the whole window
                (network only: the preprocessed window is already on the device),
  (b) full      this project's network forward on the whole window (same input),
  (c) incr      the node's incremental path: `DA3WindowModel.encode()` of the new
                uint8 frame (upload + preprocess + per-view blocks) and
                `predict(decode=[newest])` (cross-view blocks over the cached window,
                depth head on the new frame only, pose from the chosen source,
                maps to native size and host transfer).

(a) and (b) exclude upload / preprocessing / host transfer, (c) includes them, so
the ratios (a)/(c) and (b)/(c) are conservative. Per-stage timings of (c) (encode,
cross-view, depth head, pose) come from CUDA events. Before timing, (c)'s depth of
the new frame is checked against (b)'s (and (b)'s against (a)'s).

    da3_ros bench --variants da3-small da3-base da3-large da3-giant --out bench_out

Only torch, numpy and safetensors are needed at import time; the official package
and `da3_ros.model` are imported lazily. Without CUDA it runs on the CPU (tests);
CPU numbers are not the benchmark.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
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

DEFAULT_VARIANTS = ["da3-small", "da3-base", "da3-large", "da3-giant"]
DEFAULT_WINDOWS = [4, 8, 16]
DEFAULT_SIZES = ["504x378", "280x504"]
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
    p = argparse.ArgumentParser(prog="da3_ros bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    p.add_argument("--windows", nargs="+", type=int, default=DEFAULT_WINDOWS)
    p.add_argument("--sizes", nargs="+", type=parse_size, default=[parse_size(s) for s in DEFAULT_SIZES],
                   help="native input sizes WxH (default 504x378 280x504)")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (median, p90)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="auto: bf16 autocast on CUDA (as the official package), fp32 on CPU")
    p.add_argument("--pose-from", default="camera", choices=["camera", "ray"])
    p.add_argument("--no-official", action="store_true", help="skip (a), the official network")
    p.add_argument("--compile", default="auto", choices=["auto", "inductor", "graphs", "staged", "off"],
                   help="(c)'s optimised path (DA3WindowModel compile=): auto = CUDA graphs + torch.compile "
                        "on CUDA, plain on the CPU; off = the plain eager path")
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
    cross_view (blocks over the window), depth_head (new frame; includes the camera decoder),
    pose (the pose source alone: camera decoder, or ray head on every view + solver),
    metric_branch (nested models only). The host transfer of predict is not a stage here."""
    from da3_ros.model.camera import decode_pose, invert_rigid
    from da3_ros.model.net import NestedDA3Net

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
            feats, cam = main.forward_features(tokens, sel, hw, ref_view_strategy=wm.ref_view_strategy)
            c.mark()
            main.forward_heads(feats, cam, hw, [S - 1], "camera", rays=False)
            c.mark()
            if wm.pose_from == "ray":
                main.forward_heads(feats, cam, hw, [], "ray")
            else:
                with torch.autocast(device_type=device.type, enabled=False):
                    invert_rigid(decode_pose(main.cam_dec(cam), hw)[0])
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


# ---------------------------------------------------------------------- one variant
def _oom_types():
    t = [RuntimeError]
    if hasattr(torch.cuda, "OutOfMemoryError"):
        t.insert(0, torch.cuda.OutOfMemoryError)
    return tuple(t)


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()


def bench_variant(variant: str, args, device: torch.device, precision: str, use_official: bool,
                  log=print) -> List[Dict[str, Any]]:
    from da3_ros.model import load_model
    from da3_ros.runtime.da3_model import DA3WindowModel
    from da3_ros.model.preprocess import map_to_native, preprocess
    from da3_ros.stream.interface import Frame

    amp = _amp_dtype(precision)
    rng = np.random.default_rng(args.seed)
    configs = [(w, h, S) for (w, h) in args.sizes for S in args.windows]
    frames_of: Dict[Tuple[int, int, int], List[Any]] = {}
    for (w, h, S) in configs:
        frames_of[(w, h, S)] = [Frame(i, 0.1 * i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                                for i in range(S)]
    process_res = {(w, h): max(w, h) for (w, h) in args.sizes}  # no resize: the given size is the network input
    rows: Dict[Tuple[int, int, int], Dict[str, Any]] = {}
    for (w, h, S) in configs:
        rows[(w, h, S)] = {"variant": variant, "window": S, "size": f"{w}x{h}", "official": None,
                           "official_note": None, "full": None, "incremental": None, "stages": None,
                           "check": {}}

    def window_input(key):
        w, h, _ = key
        return preprocess([f.image for f in frames_of[key]], device, process_res[(w, h)])[None]

    # ---- (a) official, then free it before ours goes to the device
    official_depth: Dict[Tuple[int, int, int], torch.Tensor] = {}
    t0 = time.perf_counter()
    if use_official:
        official = build_official(variant, args.seed)
        net = load_ported_from(official, variant)
        log(f"[{variant}] official built + state dict loaded into da3_ros.model in {time.perf_counter() - t0:.1f} s")
        official = official.to(device)
        weights_official = _param_mib(official)
        for key in configs:
            row = rows[key]
            x = window_input(key)
            row["processed_hw"] = list(x.shape[-2:])
            try:
                out = official_forward(official, x, amp, args.pose_from)
                official_depth[key] = out["depth"][0, -1].float().cpu()
                row["official"] = time_fn(lambda: official_forward(official, x, amp, args.pose_from), device,
                                          args.iters, args.warmup)
                row["official"]["weights_mib"] = weights_official
            except _oom_types() as exc:
                if not _is_oom(exc):
                    raise
                row["official_note"] = "out of memory"
            del x
            _free(device)
            log(f"[{variant}] S={key[2]} {row['size']}: (a) official {_fmt(row['official'])}")
        del official
        _free(device)
    else:
        net = load_model(f"random:{variant}", "cpu")
        for key in configs:
            rows[key]["official_note"] = args.official_reason

    # ---- (b) full forward and (c) incremental, same weights
    wm = DA3WindowModel(net, device=str(device), precision=precision, pose_from=args.pose_from,
                        compile=getattr(args, "compile", "auto"))
    net = wm.net
    weights = _param_mib(net)
    for key in configs:
        w, h, S = key
        row = rows[key]
        frames = frames_of[key]
        wm.process_res = process_res[(w, h)]
        try:
            x = window_input(key)
            row["processed_hw"] = list(x.shape[-2:])

            def full():
                with torch.inference_mode():
                    return net(x, pose_from=args.pose_from)

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
            log(f"[{variant}] S={S} {w}x{h}: (c) warm-up ({wm.compile_mode}) {warm_s:.1f} s")
            if getattr(wm, "_fast", None) is not None and wm._fast.sdpa.choice:
                log(f"[{variant}] attention kernels: " + ", ".join(
                    f"{k[0]}->{getattr(b, 'name', 'default')}" for k, b in wm._fast.sdpa.choice.items()))
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
                log(f"[{variant}] WARNING S={S} {w}x{h}: incremental depth differs from the full forward "
                    f"(max rel err {err:.3g} > {tol})")
            del pred, ref_depth
            row["incremental"] = time_fn(incremental, device, args.iters, args.warmup)
            row["incremental"]["weights_mib"] = weights
            row["incremental"]["cache_mib"] = sum(p.nbytes for p in prev) / 2 ** 20
            row["incremental"]["warmup_s"] = warm_s
            row["incremental"]["compile"] = wm.compile_mode
            row["stages"] = incremental_stages(wm, frames, prev, device, args.iters, args.warmup)
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
        log(f"[{variant}] S={S} {w}x{h}: (b) full {_fmt(b)} | (c) incremental {_fmt(c)} | "
            f"c-vs-b rel err {row['check'].get('c_vs_b_max_rel_err', float('nan')):.2e}")
    del wm, net
    _free(device)
    return [rows[k] for k in configs]


# ---------------------------------------------------------------------- report
def _fmt(m: Optional[Dict[str, Any]]) -> str:
    if not m:
        return "-"
    return f"{m['median_ms']:.1f}/{m['p90_ms']:.1f} ms"


def _num(v: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)


def render_markdown(report: Dict[str, Any]) -> str:
    L = ["# da3_ros bench", "",
         f"- command: `{report['command']}`",
         f"- device: {report['device_name']} ({report['device']})",
         f"- torch {report['torch']}, CUDA {report['cuda']}, Python {report['python']}",
         f"- date: {report['date']}",
         f"- precision: {report['precision']}, pose from: {report['pose_from']}, "
         f"iters {report['iters']} (warm-up {report['warmup']})",
         f"- (c) path: compile={report.get('compile', 'off')}"]
    for n in report["notes"]:
        L.append(f"- NOTE: {n}")
    L += ["",
          "(a) official network on the whole window; (b) da3_ros.model forward on the whole window; "
          "(c) incremental: encode(new frame) + predict(window, decode=[newest]). "
          "Times per new frame, median/p90 ms; FPS = 1000/median; peak = max allocated GPU memory "
          "(weights included). (a), (b): network only on the preprocessed window; (c): from the uint8 "
          "frame to host numpy (includes upload, preprocessing and transfer).", "",
          "| variant | S | size WxH | (a) ms med/p90 | (b) ms med/p90 | (c) ms med/p90 | FPS (a)/(b)/(c) "
          "| peak MiB (a)/(b)/(c) | (a)/(c) | (b)/(c) | rel err (c) vs (b) |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
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
        L.append(f"| {r['variant']} | {r['window']} | {r['size']} | {ms(a, a_note)} | {ms(b)} | {ms(c)} | {fps} "
                 f"| {peak} | {ra} | {rb} | {err} |")
    L += ["", "## Where the time of (c) goes (median ms; CUDA events, host clock on CPU)", "",
          "encode = upload + preprocess + per-view blocks of the new frame; cross_view = blocks over the "
          "window; depth_head = depth head on the new frame (plain path: incl. the camera decoder; "
          "optimised path: the depth branch incl. the resize to native size); pose = the pose source "
          "alone (camera decoder, or ray head on every view + solver); metric = nested metric branch. "
          "Optimised path (compile != off): the stages are its consecutive CUDA-graph replays and (c) total "
          "adds the one host transfer; plain path: the stages are re-run separately.", "",
          "| variant | S | size | encode | cross_view | depth_head | pose | metric | (c) total |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        st = r["stages"] or {}
        g = [_num(st[k]["median_ms"], "{:.2f}") if k in st else "-"
             for k in ("encode", "cross_view", "depth_head", "pose", "metric_branch")]
        tot = _num(r["incremental"]["median_ms"], "{:.2f}") if r["incremental"] else "-"
        L.append(f"| {r['variant']} | {r['window']} | {r['size']} | " + " | ".join(g) + f" | {tot} |")
    return "\n".join(L) + "\n"


def _out_paths(out: str) -> Tuple[Path, Path]:
    p = Path(out)
    if p.suffix == ".json":
        return p, p.with_suffix(".md")
    return p / "bench.json", p / "bench.md"


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or any(s < 1 for s in args.windows):
        print("da3_ros bench: --iters >= 1, --warmup >= 0, windows >= 1", file=sys.stderr)
        return 2
    notes: List[str] = []
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        notes.append("CUDA is not available: running on the CPU")
        device = torch.device("cpu")
    if device.type != "cuda":
        notes.append("CPU run: these numbers are NOT the benchmark (it is meant for a CUDA GPU)")
    for n in notes:
        print(f"da3_ros bench: NOTE: {n}", flush=True)
    precision = _resolve_precision(args.precision, device)
    use_official = not args.no_official
    args.official_reason = "--no-official"
    if use_official:
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
        "precision": precision, "pose_from": args.pose_from, "compile": args.compile, "iters": args.iters, "warmup": args.warmup,
        "official": use_official, "notes": notes, "results": [],
    }
    json_path, md_path = _out_paths(args.out)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    for v in variants:
        report["results"].extend(bench_variant(v, args, device, precision, use_official,
                                               log=lambda m: print(m, flush=True)))
        json_path.write_text(json.dumps(report, indent=1))  # partial results survive a later failure
        md_path.write_text(render_markdown(report))
    md = render_markdown(report)
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(md)
    print()
    print(md)
    for r in report["results"]:
        ra, rb = r.get("ratio_a_over_c"), r.get("ratio_b_over_c")
        print(f"{r['variant']} S={r['window']} {r['size']}: (a)/(c) = {_num(ra, '{:.2f}x')}, "
              f"(b)/(c) = {_num(rb, '{:.2f}x')}")
    bad = [r for r in report["results"] if r["check"].get("ok") is False]
    print(f"wrote {json_path} and {md_path}")
    if bad:
        print(f"WARNING: {len(bad)} configuration(s) where (c) != (b) beyond tolerance", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
