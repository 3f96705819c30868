"""One variant: (a) official, (b) full forward and (c) incremental for every
pose source, window and size, with the same weights; then the end-to-end run."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .common import REL_TOL, _amp_dtype, _fmt, _free, _is_oom, _oom_types, _param_mib, _rel_err, time_fn
from .e2e import end_to_end
from .official import build_official, load_ported_from, official_forward
from .profile import _profile_config, incremental_stages

Key = Tuple[str, int, int, int]  # (pose source, width, height, window)


class Inputs:
    """The variant's noise windows, one per (width, height, window), and their
    preprocessed network input (no resize: the given size is the network input)."""

    def __init__(self, args, device: torch.device):
        from da3_ros.stream.interface import Frame

        rng = np.random.default_rng(args.seed)
        self.device = device
        self.shapes = [(w, h, S) for (w, h) in args.sizes for S in args.windows]
        self.configs: List[Key] = [(pose, w, h, S) for pose in args.pose_source for (w, h, S) in self.shapes]
        self.frames = {(w, h, S): [Frame(i, 0.1 * i, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                                   for i in range(S)] for (w, h, S) in self.shapes}
        self.process_res = {(w, h): max(w, h) for (w, h) in args.sizes}

    def window(self, shape) -> torch.Tensor:
        from da3_ros.model.preprocess import preprocess

        w, h, _ = shape
        return preprocess([f.image for f in self.frames[shape]], self.device, self.process_res[(w, h)])[None]


def _new_row(variant: str, key: Key, precision: str) -> Dict[str, Any]:
    pose, w, h, S = key
    return {"variant": variant, "pose_source": pose, "window": S, "size": f"{w}x{h}", "precision": precision,
            "official": None, "official_note": None, "full": None, "incremental": None, "stages": None,
            "check": {}}


def bench_variant(variant: str, args, device: torch.device, precision: str, use_official: bool,
                  log=print, profile_out: Optional[List[str]] = None) -> Tuple[List[Dict[str, Any]], Optional[dict]]:
    """The variant's rows (one per configuration) and its end-to-end result."""
    from da3_ros.model import load_model

    inputs = Inputs(args, device)
    rows = {key: _new_row(variant, key, precision) for key in inputs.configs}
    official_depth: Dict[Key, torch.Tensor] = {}
    if use_official:
        net = _run_official(variant, args, device, precision, inputs, rows, official_depth, log)
    else:
        net = load_model(f"random:{variant}", "cpu")
        for key in inputs.configs:
            rows[key]["official_note"] = args.official_reason
    for pose in args.pose_source:  # (b) and (c), same weights; one adapter per pose source
        net = _run_ours(variant, pose, net, args, device, precision, inputs, rows, official_depth, log, profile_out)
    e2e = None
    if str(args.e2e).lower() != "none":
        try:
            e2e = end_to_end(net, variant, args, device, precision, args.pose_source[0], log)
        except _oom_types() as exc:
            if not _is_oom(exc):
                raise
            e2e = {"variant": variant, "note": "out of memory"}
    del net
    _free(device)
    return [rows[k] for k in inputs.configs], e2e


def _run_official(variant, args, device, precision, inputs: Inputs, rows, official_depth, log):
    """(a) for every configuration; returns da3_ros's network with the official weights
    (the official one is freed before ours goes to the device)."""
    amp = _amp_dtype(precision)
    t0 = time.perf_counter()
    official = build_official(variant, args.seed)
    net = load_ported_from(official, variant)
    log(f"[{variant}] official built + state dict loaded into da3_ros.model in {time.perf_counter() - t0:.1f} s")
    official = official.to(device)
    weights = _param_mib(official)
    for key in inputs.configs:
        pose, row = key[0], rows[key]
        x = inputs.window(key[1:])
        row["processed_hw"] = list(x.shape[-2:])
        try:
            out = official_forward(official, x, amp, pose)
            official_depth[key] = out["depth"][0, -1].float().cpu()
            row["official"] = time_fn(lambda: official_forward(official, x, amp, pose), device,
                                      args.iters, args.warmup)
            row["official"]["weights_mib"] = weights
        except _oom_types() as exc:
            if not _is_oom(exc):
                raise
            row["official_note"] = "out of memory"
        del x
        _free(device)
        log(f"[{variant}] {pose} S={key[3]} {row['size']}: (a) official {_fmt(row['official'])}")
    del official
    _free(device)
    return net


def _run_ours(variant, pose, net, args, device, precision, inputs: Inputs, rows, official_depth, log, profile_out):
    """(b) and (c) of every configuration of one pose source; returns the network."""
    from da3_ros.runtime.da3_model import DA3WindowModel

    wm = DA3WindowModel(net, device=str(device), precision=precision, pose_source=pose,
                        compile=getattr(args, "compile", "auto"), ray_map=getattr(args, "ray_map", "quarter"))
    if getattr(wm, "_fast", None) is not None:
        wm._fast.log = lambda m: log(f"[{variant}] {m}")  # kernel choices, capture failures
    for key in [k for k in inputs.configs if k[0] == pose]:
        row = rows[key]
        wm.process_res = inputs.process_res[key[1:3]]
        try:
            ref_depth = _run_full(wm, key, row, inputs, official_depth, args, device)
            _run_incremental(wm, key, row, inputs, ref_depth, args, device, precision, log, profile_out)
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
        log(f"[{variant}] {pose} S={key[3]} {row['size']}: (b) full {_fmt(b)} | (c) incremental {_fmt(c)} | "
            f"c-vs-b rel err {row['check'].get('c_vs_b_max_rel_err', float('nan')):.2e}")
    net = wm.net
    del wm
    _free(device)
    return net


def _run_full(wm, key: Key, row, inputs: Inputs, official_depth, args, device) -> torch.Tensor:
    """(b): the network's forward on the whole window; returns its newest frame's depth."""
    pose, net = key[0], wm.net
    x = inputs.window(key[1:])
    row["processed_hw"] = list(x.shape[-2:])

    def full():
        with torch.inference_mode():
            return net(x, pose_source=pose)

    ref_depth = full()["depth"][0, -1].float()
    if key in official_depth:
        row["check"]["b_vs_a_max_rel_err"] = _rel_err(ref_depth, official_depth[key])
    row["full"] = time_fn(full, device, args.iters, args.warmup)
    row["full"]["weights_mib"] = _param_mib(net)
    del x
    _free(device)
    return ref_depth


def _run_incremental(wm, key: Key, row, inputs: Inputs, ref_depth, args, device, precision, log, profile_out):
    """(c): start-up warm-up (compile + CUDA-graph capture of this window's shapes), then the
    window's older frames are cached, each step encodes the new frame and predicts; checked
    against (b)."""
    from da3_ros.model.preprocess import map_to_native

    variant, (pose, w, h, S) = row["variant"], key
    frames = inputs.frames[(w, h, S)]
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
        return wm.predict(frames, prev + [wm.encode(frames[-1])], [S - 1])

    d_c = torch.from_numpy(incremental().depth[S - 1])
    err = _rel_err(d_c, map_to_native(ref_depth[None], (h, w))[0].cpu())
    tol = REL_TOL[precision]
    row["check"].update({"c_vs_b_max_rel_err": err, "tolerance": tol, "ok": bool(err <= tol)})
    if not err <= tol:
        log(f"[{variant}] WARNING {pose} S={S} {w}x{h}: incremental depth differs from the full "
            f"forward (max rel err {err:.3g} > {tol})")
    row["incremental"] = time_fn(incremental, device, args.iters, args.warmup)
    row["incremental"].update(weights_mib=_param_mib(wm.net), cache_mib=sum(p.nbytes for p in prev) / 2 ** 20,
                              warmup_s=warm_s, compile=wm.compile_mode)
    row["stages"] = incremental_stages(wm, frames, prev, device, args.iters, args.warmup)
    if profile_out is not None and args.profile > 0:
        try:
            _profile_config(profile_out, wm, incremental, variant, pose, S, w, h, precision, args, device)
        except Exception as exc:  # a profile is a diagnostic: never lose the timings for it
            log(f"[{variant}] profile failed: {type(exc).__name__}: {exc}")
