"""What every part of the benchmark shares: the node's defaults, sizes, precision,
device timing (CUDA events or the host clock), memory and error helpers."""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from da3_ros.stream.settings import SETTINGS

DEFAULT_VARIANTS = ["da3-small", "da3-base", "da3-large", "da3-giant"]
DEFAULT_WINDOWS = [8]
DEFAULT_SIZES = ["504x378"]
#: the node's defaults (the settings table): pose_source, window_size, and the network
#: input of a 640x480 camera at process_res 504
NODE_POSE, NODE_WINDOW, NODE_SIZE = SETTINGS["pose_source"].default, SETTINGS["window_size"].default, "504x378"
#: (c) vs (b) depth agreement expected under bf16 autocast (fp32: ~1e-5)
REL_TOL = {"fp32": 1e-3, "bf16": 5e-2, "fp16": 2e-2}


def parse_size(text: str) -> Tuple[int, int]:
    """'504x378' -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WxH, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


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


def _oom_types():
    t = [RuntimeError]
    if hasattr(torch.cuda, "OutOfMemoryError"):
        t.insert(0, torch.cuda.OutOfMemoryError)
    return tuple(t)


def _is_oom(exc: BaseException) -> bool:
    return "out of memory" in str(exc).lower()


def _fmt(m: Optional[Dict[str, Any]]) -> str:
    if not m:
        return "-"
    return f"{m['median_ms']:.1f}/{m['p90_ms']:.1f} ms"


def _num(v: Optional[float], fmt: str = "{:.1f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else fmt.format(v)
