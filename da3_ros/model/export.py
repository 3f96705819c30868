"""`da3_ros export-onnx`: the window network as two ONNX graphs (for TensorRT on Jetson).

Caching is what makes the streaming path cheap, so the network is split where
the node splits it:

* `encoder.onnx`  image (1, 3, H, W) float32, ImageNet-normalised
                  -> tokens (1, T, D), selector (1, D)
                  (patch embedding + the per-view blocks; run once per frame, keep
                  the outputs of the last S-1 frames)
* `window.onnx`   tokens (S, T, D), selector (S, D) of the window, oldest first
                  -> depth (1, H, W), depth_conf (1, H, W) of the NEWEST frame,
                  extrinsics (S, 3, 4) world-to-camera (world = reference view),
                  intrinsics (S, 3, 3) in network-input pixels
                  (reference-view choice, cross-view blocks, depth head on the
                  newest frame, camera decoder on all frames)

T = 1 + (H/14)(W/14). Shapes are fixed (one engine per window size and
resolution); the graphs are exported in fp32 (build the engine with --fp16).
Any-view models only (da3-small, da3-base, da3-large, da3-giant and the
registry's other any-view entries); pose from the camera head.

    da3_ros export-onnx --model depth-anything/DA3-SMALL --window 8 --size 504x378 --out onnx/
    trtexec --onnx=onnx/encoder.onnx --fp16 --saveEngine=encoder.plan
    trtexec --onnx=onnx/window.onnx --fp16 --saveEngine=window.plan

`--check` runs both graphs with onnxruntime (CPU) and compares with PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..usage import ArgumentParser, UsageError, int_range, one_line_errors, output_directory
from .config import PATCH_SIZE
from .reference import REF_STRATEGIES


class EncoderGraph(nn.Module):
    """image (1, 3, H, W) -> tokens (1, T, D), selector (1, D): `DA3Net.encode` of one frame."""

    def __init__(self, net):
        super().__init__()
        self.vit = net.vit

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.vit.embed(image)
        return self.vit.forward_early(x)


class WindowGraph(nn.Module):
    """tokens (S, T, D), selector (S, D) -> depth, depth_conf (1, H, W) of frame S-1,
    extrinsics (S, 3, 4), intrinsics (S, 3, 3): `DA3Net.forward_window(decode=[S-1])`."""

    def __init__(self, net, image_hw: Tuple[int, int], reference_strategy: str = "saddle_balanced"):
        super().__init__()
        self.net = net
        self.image_hw = tuple(image_hw)
        self.reference_strategy = reference_strategy

    def forward(self, tokens: torch.Tensor, selector: torch.Tensor):
        S = tokens.shape[0]
        feats, cam = self.net.forward_features(tokens[None], selector[None], self.image_hw,
                                               reference_strategy=self.reference_strategy)
        out = self.net.forward_heads(feats, cam, self.image_hw, [S - 1], "camera", rays=False)
        return out["depth"][0], out["depth_conf"][0], out["extrinsics"][0], out["intrinsics"][0]


def _anyview_net(model, variant: Optional[str] = None):
    from .loading import load_model
    from .net import DA3Net

    net = model if isinstance(model, nn.Module) else load_model(model, "cpu", variant=variant)
    if not (isinstance(net, DA3Net) and net.cfg.any_view):
        raise ValueError("export-onnx exports any-view DA3Net models (not monocular / nested)")
    net.set_precision("fp32")
    return net.float().eval()


def example_inputs(net, image_hw: Tuple[int, int], window: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Deterministic example image and window tokens (from encoding random images)."""
    H, W = image_hw
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(window, 3, H, W, generator=g)
    with torch.no_grad():
        x = net.vit.embed(images)
        tokens, selector = net.vit.forward_early(x)
    return {"image": images[-1:], "tokens": tokens, "selector": selector}


def _export(module: nn.Module, args: tuple, path: Path, input_names, output_names, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, args, str(path), input_names=list(input_names),
                              output_names=list(output_names), opset_version=opset, dynamo=False,
                              do_constant_folding=True)
        except TypeError:  # torch without the `dynamo` keyword
            torch.onnx.export(module, args, str(path), input_names=list(input_names),
                              output_names=list(output_names), opset_version=opset, do_constant_folding=True)


def export_onnx(model, out_dir, window: int, image_hw: Tuple[int, int], variant: Optional[str] = None,
                opset: int = 17, reference_strategy: str = "saddle_balanced") -> Dict[str, str]:
    """Write encoder.onnx, window.onnx and export.json to `out_dir`; returns their paths.

    image_hw: network input (H, W), multiples of 14."""
    H, W = (int(v) for v in image_hw)
    if H % PATCH_SIZE or W % PATCH_SIZE:
        raise ValueError(f"network input {H}x{W} must be multiples of {PATCH_SIZE}")
    if window < 1:
        raise ValueError("window must be >= 1")
    net = _anyview_net(model, variant)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ex = example_inputs(net, (H, W), window)
    enc, win = EncoderGraph(net).eval(), WindowGraph(net, (H, W), reference_strategy).eval()
    with torch.no_grad():
        enc(ex["image"])  # fill the position-embedding / RoPE / UV caches outside tracing
        win(ex["tokens"], ex["selector"])
        _export(enc, (ex["image"],), out / "encoder.onnx", ["image"], ["tokens", "selector"], opset)
        _export(win, (ex["tokens"], ex["selector"]), out / "window.onnx", ["tokens", "selector"],
                ["depth", "depth_conf", "extrinsics", "intrinsics"], opset)
    T = 1 + (H // PATCH_SIZE) * (W // PATCH_SIZE)
    meta = {"variant": getattr(net.cfg, "name", "?"), "window": window, "image_hw": [H, W], "tokens": T,
            "dim": net.vit.embed_dim, "opset": opset, "reference_strategy": reference_strategy,
            "encoder": {"inputs": {"image": [1, 3, H, W]},
                        "outputs": {"tokens": [1, T, net.vit.embed_dim], "selector": [1, net.vit.embed_dim]}},
            "window_graph": {"inputs": {"tokens": [window, T, net.vit.embed_dim],
                                        "selector": [window, net.vit.embed_dim]},
                             "outputs": {"depth": [1, H, W], "depth_conf": [1, H, W],
                                         "extrinsics": [window, 3, 4], "intrinsics": [window, 3, 3]}},
            "preprocessing": "RGB, resize (official rule, see da3_ros.model.preprocess), (x/255 - mean)/std ImageNet",
            "torch": torch.__version__}
    (out / "export.json").write_text(json.dumps(meta, indent=1))
    return {"encoder": str(out / "encoder.onnx"), "window": str(out / "window.onnx"),
            "meta": str(out / "export.json")}


def check_onnx(model, paths: Dict[str, str], window: int, image_hw: Tuple[int, int],
               variant: Optional[str] = None, reference_strategy: str = "saddle_balanced") -> Dict[str, float]:
    """Run both graphs with onnxruntime (CPU) on the example inputs; max relative errors vs PyTorch."""
    import numpy as np
    import onnxruntime as ort

    net = _anyview_net(model, variant)
    ex = example_inputs(net, image_hw, window)
    with torch.no_grad():
        ref_tok, ref_sel = EncoderGraph(net)(ex["image"])
        ref_win = WindowGraph(net, image_hw, reference_strategy)(ex["tokens"], ex["selector"])
    so = ort.SessionOptions()
    so.log_severity_level = 3
    enc = ort.InferenceSession(paths["encoder"], so, providers=["CPUExecutionProvider"])
    win = ort.InferenceSession(paths["window"], so, providers=["CPUExecutionProvider"])
    tok, sel = enc.run(None, {"image": ex["image"].numpy()})
    outs = win.run(None, {"tokens": ex["tokens"].numpy(), "selector": ex["selector"].numpy()})

    def rel(a, b):
        b = b.detach().numpy().astype(np.float64)
        return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-12))

    errs = {"tokens": rel(tok, ref_tok), "selector": rel(sel, ref_sel)}
    for name, a, b in zip(("depth", "depth_conf", "extrinsics", "intrinsics"), outs, ref_win):
        errs[name] = rel(a, b)
    return errs


def _parse_hw(text: str) -> Tuple[int, int]:
    """`--size` WxH -> (w, h); argparse reports a bad value in one line."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted: WxH in pixels, e.g. 640x480") from None
    if w < 14 or h < 14:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted: at least 14x14 pixels")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="da3_ros export-onnx", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="depth-anything/DA3-SMALL",
                   help="hub id, hub-layout dir, .safetensors (with --variant) or random:<variant>")
    p.add_argument("--variant", default=None)
    p.add_argument("--window", type=int_range(2, 64), default=8, help="frames per window (fixed in the graph)")
    p.add_argument("--size", type=_parse_hw, default="504x378",
                   help="native camera size WxH; the network input follows the official resize rule")
    p.add_argument("--process-res", type=int_range(56, 1512), default=504)
    p.add_argument("--reference-strategy", default="saddle_balanced", choices=REF_STRATEGIES)
    p.add_argument("--opset", type=int_range(1), default=17)
    p.add_argument("--out", default="onnx")
    p.add_argument("--check", action="store_true", help="verify with onnxruntime (CPU) against PyTorch")
    return p


@one_line_errors("da3_ros export-onnx")
def main(argv: Optional[Sequence[str]] = None) -> int:
    from .loading import DA3LoadError
    from .preprocess import processed_size

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    w, h = args.size
    hw = processed_size(h, w, args.process_res)
    output_directory(args.out, overwrite=True)  # the graphs and export.json are (re)written there
    try:
        net = _anyview_net(args.model, args.variant)
    except (DA3LoadError, ValueError) as exc:  # an unknown model, a monocular one, no weights here
        raise UsageError(f"--model {args.model!r}: {exc}") from None
    paths = export_onnx(net, args.out, args.window, hw, opset=args.opset, reference_strategy=args.reference_strategy)
    print(f"wrote {paths['encoder']} and {paths['window']} (network input {hw[1]}x{hw[0]}, window {args.window})")
    if args.check:
        errs = check_onnx(net, paths, args.window, hw, reference_strategy=args.reference_strategy)
        print("onnxruntime vs PyTorch, max relative error: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()))
        if max(errs.values()) > 1e-3:
            print("ERROR: the ONNX graphs differ from PyTorch", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
