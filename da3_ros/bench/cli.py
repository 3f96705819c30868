"""`da3_ros bench` command line: arguments, the run over the variants, bench.json
and bench.md (and profile.txt with --profile)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from da3_ros.stream.settings import SETTINGS
from da3_ros.usage import ArgumentParser, UsageError, one_line_errors

from .common import DEFAULT_SIZES, DEFAULT_VARIANTS, DEFAULT_WINDOWS, NODE_POSE, _num, _resolve_precision, parse_size
from .official import official_available
from .tables import render_markdown
from .variant import bench_variant

_DESCRIPTION = "da3_ros bench: per-new-frame cost of DA3 in a sliding window, on one GPU."


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="da3_ros bench", description=_DESCRIPTION)
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
    p.add_argument("--pose-source", nargs="+", default=[NODE_POSE], choices=SETTINGS["pose_source"].choices,
                   help="pose sources to run, each for (a), (b) and (c) (default: ray, the node's)")
    p.add_argument("--ray-map", default=SETTINGS["ray_map"].default, choices=SETTINGS["ray_map"].choices,
                   help="(c)'s ray map for ray poses (DA3WindowModel ray_map=; default quarter, the node's)")
    p.add_argument("--no-official", action="store_true", help="skip (a), the official network")
    p.add_argument("--compile", default=SETTINGS["compile"].default, choices=SETTINGS["compile"].choices,
                   help="(c)'s optimised path (DA3WindowModel compile=): auto = CUDA graphs + torch.compile "
                        "on CUDA, plain on the CPU; off = the plain eager path")
    p.add_argument("--e2e", default="640x480", help="camera size WxH of the end-to-end run ('none': skip)")
    p.add_argument("--e2e-frames", type=int, default=60, help="timed frames of the end-to-end run")
    p.add_argument("--e2e-warmup", type=int, default=12, help="frames streamed before timing (window fill)")
    p.add_argument("--process-res", type=int, default=SETTINGS["process_res"].default,
                   help="process_res of the end-to-end run (node default)")
    p.add_argument("--profile", type=int, default=0, help="torch.profiler over this many frames of (c) (0: off)")
    p.add_argument("--out", default="bench_out", help="directory (or .../bench.json) for bench.json and bench.md")
    p.add_argument("--seed", type=int, default=0)
    return p


def _out_paths(out: str) -> Tuple[Path, Path]:
    p = Path(out)
    if p.suffix == ".json":
        return p, p.with_suffix(".md")
    return p / "bench.json", p / "bench.md"


def _check_args(args) -> Optional[str]:
    """The reason the arguments cannot run, or None."""
    if args.iters < 1 or args.warmup < 0 or any(s < 1 for s in args.windows):
        return "--iters >= 1, --warmup >= 0, windows >= 1"
    if str(args.e2e).lower() != "none":
        try:
            parse_size(args.e2e)
        except argparse.ArgumentTypeError as exc:
            return f"--e2e: {exc}"
    return None


def _device(args, notes: List[str]) -> torch.device:
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
    return device


def _official(args, notes: List[str]) -> bool:
    """Whether (a) runs; the reason it does not in args.official_reason."""
    args.official_reason = "--no-official"
    if args.no_official:
        return False
    # the official package prints an INFO line per network it builds (read once, at its import)
    os.environ.setdefault("DA3_LOG_LEVEL", "WARN")
    ok, reason = official_available()
    if not ok:
        args.official_reason = reason
        notes.append(f"(a) skipped: {reason}")
        print(f"da3_ros bench: NOTE: {reason}; (a) is skipped", flush=True)
    return ok


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 matmuls stay fp32 (the official default)
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _new_report(argv, args, device, name, precision, use_official, notes) -> Dict[str, Any]:
    return {
        "command": "da3_ros bench " + " ".join(shlex.quote(a) for a in argv),
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "precision": precision, "pose_source": args.pose_source, "compile": args.compile, "ray_map": args.ray_map,
        "iters": args.iters,
        "warmup": args.warmup, "official": use_official, "notes": notes, "results": [], "e2e": [],
    }


@one_line_errors("da3_ros bench")
def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    problem = _check_args(args)
    if problem:
        print(f"da3_ros bench: {problem}", file=sys.stderr)
        return 2
    args.pose_source = list(dict.fromkeys(args.pose_source))
    notes: List[str] = []
    device = _device(args, notes)
    for n in notes:
        print(f"da3_ros bench: NOTE: {n}", flush=True)
    precision = _resolve_precision(args.precision, device)
    use_official = _official(args, notes)
    from da3_ros.model import canonical_name

    try:
        variants = [canonical_name(v) for v in args.variants]
    except KeyError as exc:
        print(f"da3_ros bench: {exc.args[0]}", file=sys.stderr)
        return 2
    name = _device_name(device)
    report = _new_report(argv, args, device, name, precision, use_official, notes)
    paths = _run(variants, args, device, precision, use_official, report, name)
    _print_summary(report, *paths)
    return 0


def _run(variants, args, device, precision, use_official, report, name) -> Tuple[Path, Path, Optional[Path]]:
    """Every variant, the files rewritten after each (partial results survive a later failure)."""
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
        json_path.write_text(json.dumps(report, indent=1))
        md_path.write_text(render_markdown(report))
        if profiles:
            profile_path.write_text(f"# kernel profiles ({name}, torch {torch.__version__})\n\n" + "\n".join(profiles))
    json_path.write_text(json.dumps(report, indent=1))
    md_path.write_text(render_markdown(report))
    return json_path, md_path, profile_path if profiles else None


def _print_summary(report, json_path: Path, md_path: Path, profile_path: Optional[Path]) -> None:
    print()
    print(render_markdown(report))
    for r in report["results"]:
        ra, rb = r.get("ratio_a_over_c"), r.get("ratio_b_over_c")
        print(f"{r['variant']} {r['pose_source']} S={r['window']} {r['size']}: (a)/(c) = {_num(ra, '{:.2f}x')}, "
              f"(b)/(c) = {_num(rb, '{:.2f}x')}")
    bad = [r for r in report["results"] if r["check"].get("ok") is False]
    print(f"wrote {json_path} and {md_path}" + (f" and {profile_path}" if profile_path else ""))
    if bad:
        print(f"WARNING: {len(bad)} configuration(s) where (c) != (b) beyond tolerance", flush=True)
