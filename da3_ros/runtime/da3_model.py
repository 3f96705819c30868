"""`WindowModel` adapter: DA3 behind the streaming core's contract.

`encode(frame)` uploads the uint8 image, preprocesses it on the device and runs
the per-view blocks once; the handle keeps those tokens. `predict` stacks the
cached tokens of a window, runs only the cross-view blocks, the depth head on the
decoded frames and the camera (or ray) head on all, and maps everything to each
frame's native resolution. One device->host transfer per output kind.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..model.api import normalize_poses, to_callers_world
from ..model.fast import FastPath, Kernels, resolve_compile
from ..model.loading import load_model
from ..model.net import POSE_SOURCES, DA3Net, FrameTokens, NestedDA3Net, metric_depth
from ..model.preprocess import DEFAULT_PROCESS_RES, intrinsics_to_native, intrinsics_to_processed, map_to_native, preprocess
from ..stream.interface import Frame, WindowPrediction

#: horizontal field of view assumed by monocular metric models when no intrinsics are known
DEFAULT_HFOV_DEG = 60.0


def _precision_name(amp_dtype: Optional[torch.dtype]) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp_dtype, str(amp_dtype))


@dataclass
class DA3FrameHandle:
    """Cache of one frame: its tokens on the device and its sizes."""

    index: int
    tokens: FrameTokens
    native_hw: Tuple[int, int]
    processed_hw: Tuple[int, int]

    @property
    def nbytes(self) -> int:
        return self.tokens.nbytes()


class DA3WindowModel:
    """DA3 as a `da3_ros.stream.interface.WindowModel`.

    model: anything `load_model` accepts (hub id, directory, .safetensors with
        `variant`, "random:da3-small") or an already built network.
    precision: "fp32" | "bf16" | "fp16" | "auto" (bf16 autocast on CUDA, fp32 on CPU).
    pose_source: "camera" (camera-token decoder, cheap) or "ray" (ray head + solver).
    ray_map: the ray map the pose solver fits (pose_source="ray"): "quarter" (default: the ray
        head above the 2x level at a quarter of the official resolution per axis; on the
        embedded model's held-out sequences as accurate for trajectories and intrinsics as
        the official map, test/runtime/test_ray_pose_guard.py), "half" (only the head's last
        stage at half resolution) or "full" (the official map). See `DA3Net.forward_pose`.
    compile: the optimised incremental path (`da3_ros.model.fast`), same answers within
        the precision's tolerance: "auto" (default: CUDA graphs + torch.compile-fused
        blocks on CUDA when triton is importable, the plain path on the CPU), True /
        "inductor", "graphs" (CUDA graphs only), "staged" (fixed-shape stages without
        graphs: the CPU-testable part), False / "off" (plain eager path). Any-view
        models only; pose conditioning, nested and monocular models use the plain path.
        Under bf16/fp16 the ViT blocks' Linear weights are stored in that dtype (what
        autocast casts them to anyway), so the network must then run under autocast.
        Call `warmup(width, height, window)` at start-up to compile and capture the
        fixed shapes before the first frame.
    kernels: the fast path's kernel switches (`da3_ros.model.fast.Kernels`; the settings
        attention_kernel, head_channels_last, compile_dynamic, inductor_mode).
    """

    def __init__(self, model: Any = "depth-anything/DA3-SMALL", device: str = "cpu", precision: str = "auto",
                 process_res: int = DEFAULT_PROCESS_RES, pose_source: str = "camera",
                 reference_strategy: str = "saddle_balanced", variant: Optional[str] = None,
                 compile: Union[bool, str] = "auto", ray_map: str = "quarter", kernels: Optional[Kernels] = None):
        self.device = torch.device(device)
        net = model if isinstance(model, torch.nn.Module) else load_model(model, self.device, variant=variant)
        self.net = net.to(self.device).eval()
        self.net.set_precision(precision)
        if pose_source not in POSE_SOURCES:
            raise ValueError(f"pose_source must be 'camera' or 'ray', got {pose_source!r}")
        self.precision = precision
        self.process_res = process_res
        self.pose_source = pose_source
        self.reference_strategy = reference_strategy
        self.ray_map = ray_map
        self._anyview = isinstance(net, NestedDA3Net) or net.cfg.any_view
        self.metric = isinstance(net, NestedDA3Net) or (isinstance(net, DA3Net) and net.is_metric)
        variant = getattr(net, "variant", getattr(net.cfg, "name", "da3"))
        #: what the network runs at ("auto" resolved: fp32 on a CPU, bf16 or fp16 on a GPU)
        self.precision_used = _precision_name(getattr(net, "amp_dtype", getattr(getattr(net, "da3", None), "amp_dtype", None)))
        self.name = (f"DA3 {variant} ({self.device.type}, {self.precision_used}, process_res={process_res}, "
                     f"pose_source={pose_source}, reference_strategy={reference_strategy})")
        self._warned_fov = False
        self.compile_mode = resolve_compile(compile, self.device)
        self._fast: Optional[FastPath] = None
        if self.compile_mode != "off" and isinstance(net, DA3Net) and net.cfg.any_view:
            self._fast = FastPath(net, self.device, self.compile_mode, pose_source, reference_strategy, ray_map,
                                  kernels=kernels)
        elif self.compile_mode != "off":
            self.compile_mode = "off"

    @torch.inference_mode()
    def warmup(self, width: int, height: int, window: int, all_sizes: bool = True) -> float:
        """Compile / capture the fixed shapes of a stream of `width` x `height` frames
        before the first frame: windows of 1..`window` views (only `window` when
        all_sizes is False), each with 1..all of its views decoded. A window's
        stages depend only on those sizes (`FastPath.window_key`), so this covers
        every window the streaming core can ask for (filling window, shared
        keyframes decoded again, strides, rig frames); `captures_after_warmup`
        counts any shape met later. The full window goes first, so its shapes are
        the ones compiled static. Returns the seconds it took (0 on the plain path)."""
        if self._fast is None:
            return 0.0
        t0 = time.perf_counter()
        window = int(window)
        self._fast.warm = False
        img = np.zeros((int(height), int(width), 3), dtype=np.uint8)
        tok, sel, hw = self._fast.encode(img, self.process_res)
        sizes = [window] + (list(range(1, window)) if all_sizes else [])
        for S in sizes:
            for n in range(1, S + 1):
                self._fast.window([tok] * S, [sel] * S, hw, list(range(S - n, S)), (int(height), int(width)))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self._fast.warm = True
        return time.perf_counter() - t0

    @property
    def captures_after_warmup(self) -> int:
        """Fixed-shape stage sets made after the last warm-up (each a set of CUDA-graph
        captures on the GPU, a latency spike while streaming): 0 expected."""
        return self._fast.shapes_after_warmup if self._fast is not None else 0

    # ------------------------------------------------------------------ protocol
    @torch.inference_mode()
    def encode(self, frame: Frame) -> DA3FrameHandle:
        if self._fast is not None and isinstance(frame.image, np.ndarray):
            tok, sel, hw = self._fast.encode(frame.image, self.process_res)
            return DA3FrameHandle(frame.index, FrameTokens(tok, sel, hw), (frame.height, frame.width), hw)
        images = preprocess([frame.image], self.device, self.process_res)
        tokens = self.net.encode(images)[0]
        return DA3FrameHandle(frame.index, tokens, (frame.height, frame.width), tuple(images.shape[-2:]))

    @torch.inference_mode()
    def predict(self, frames: Sequence[Frame], handles: Sequence[DA3FrameHandle], decode: Sequence[int],
                intrinsics: Optional[np.ndarray] = None, c2w: Optional[np.ndarray] = None) -> WindowPrediction:
        S = len(handles)
        if S == 0 or len(frames) != S:
            raise ValueError("predict needs one handle per frame and at least one frame")
        decode = [int(d) for d in decode]
        if any(d < 0 or d >= S for d in decode):
            raise IndexError(f"decode indices {decode} outside the window of {S}")
        hw = handles[0].processed_hw
        dev = self.device
        # known intrinsics in processed pixels (argument, else the frames' CameraInfo)
        K_native = intrinsics if intrinsics is not None else self._frame_intrinsics(frames)
        K_proc = None
        if K_native is not None:
            K_proc = torch.tensor(np.stack([intrinsics_to_processed(K_native[i], h.native_hw, hw)
                                            for i, h in enumerate(handles)]), dtype=torch.float32, device=dev)
        cond = None
        if c2w is not None and intrinsics is not None and self._anyview:
            cond = normalize_poses(torch.as_tensor(np.asarray(c2w), dtype=torch.float32, device=dev))
        if (self._fast is not None and cond is None and decode
                and len({handles[d].native_hw for d in decode}) == 1
                and all(h.processed_hw == hw and h.tokens.tokens is not None for h in handles)):
            return self._predict_fast(handles, decode)
        out = self.net.forward_window([h.tokens for h in handles], decode, pose_source=self.pose_source,
                                      reference_strategy=self.reference_strategy,
                                      extrinsics=None if cond is None else cond[0][None],
                                      intrinsics=None if cond is None else K_proc[None],
                                      ray_map=self.ray_map)
        w2c, K_pred, depth, metric, extras = self._window_poses(out, cond, K_proc, c2w, decode, S, hw)
        c2w_out, K_out = self._native_poses(w2c.cpu(), K_pred.cpu(), handles)
        depth_np, conf_np = self._native_maps(depth, out.get("depth_conf"), decode, handles)
        return WindowPrediction(c2w=c2w_out, intrinsics=K_out, depth=depth_np, confidence=conf_np,
                                pose_confidence=np.ones(S) if "extrinsics" in out else np.zeros(S),
                                metric=bool(metric), extras=extras)

    def _window_poses(self, out, cond, K_proc, c2w, decode: Sequence[int], S: int, hw):
        """The plain path's answer -> (w2c (S, 3|4, 4) in the caller's world, intrinsics (S, 3, 3)
        in processed pixels, depth, metric, extras). Given poses (`cond`) put depth and poses in
        the caller's unit; a monocular model has no poses (the given ones, else identity)."""
        depth, metric, extras = out.get("depth"), self.metric, {}
        if "extrinsics" in out:
            w2c, K_pred = out["extrinsics"][0], out["intrinsics"][0]
            if cond is not None:
                depth, w2c = to_callers_world(out, cond, depth, w2c)
                metric = False
        else:  # monocular model: no poses
            w2c = torch.eye(4, device=self.device)[None].repeat(S, 1, 1)
            if c2w is not None:
                w2c = torch.linalg.inv(torch.as_tensor(np.asarray(c2w), dtype=torch.float32, device=self.device))
            K_pred = K_proc if K_proc is not None else self._default_intrinsics(S, *hw)
            extras["poses_valid"] = False
            if isinstance(self.net, DA3Net) and self.net.is_metric:
                depth = metric_depth(depth, K_pred[None, decode])
        if "scale_factor" in out:
            extras["scale_factor"] = float(out["scale_factor"])
        elif isinstance(self.net, NestedDA3Net):
            metric = False  # nothing decoded: no metric scale this window
        return w2c, K_pred, depth, metric, extras

    @staticmethod
    def _native_poses(w2c: torch.Tensor, K: torch.Tensor, handles: Sequence[DA3FrameHandle]):
        """Host w2c (S, 3|4, 4) and processed-pixel intrinsics -> c2w (S, 4, 4) and each
        frame's intrinsics at its native size (float64)."""
        hw = handles[0].processed_hw
        w2c4 = torch.eye(4, dtype=torch.float64).repeat(len(handles), 1, 1)
        w2c4[:, :3] = w2c[:, :3].double()
        K_np = K.double().numpy()
        return (torch.linalg.inv(w2c4).numpy(),
                np.stack([intrinsics_to_native(K_np[i], hw, h.native_hw) for i, h in enumerate(handles)]))

    @staticmethod
    def _native_maps(depth, conf, decode: Sequence[int], handles: Sequence[DA3FrameHandle]):
        """Depth and confidence (1, n, H, W) of the decoded frames -> {frame: (h, w) float32}
        at each frame's native size; one resize and one transfer when they share it."""
        depth_np, conf_np = {}, {}
        if not decode:
            return depth_np, conf_np
        maps = torch.stack([depth[0], conf[0]]) if conf is not None else depth  # (K, n, H, W)
        native = [handles[d].native_hw for d in decode]
        if len(set(native)) == 1:  # one resize + one transfer for the whole window
            up = map_to_native(maps.flatten(0, 1), native[0]).unflatten(0, maps.shape[:2])
            per_frame = list(up.float().cpu().numpy().transpose(1, 0, 2, 3))
        else:
            per_frame = [map_to_native(maps[:, j], native[j]).float().cpu().numpy() for j in range(len(decode))]
        for j, d in enumerate(decode):
            depth_np[d] = np.ascontiguousarray(per_frame[j][0], dtype=np.float32)
            conf_np[d] = (np.ascontiguousarray(per_frame[j][1], dtype=np.float32) if conf is not None
                          else np.ones_like(depth_np[d]))
        return depth_np, conf_np

    def _predict_fast(self, handles: Sequence[DA3FrameHandle], decode: Sequence[int],
                      clock=None) -> WindowPrediction:
        S = len(handles)
        maps, w2c, K = self._fast.window([h.tokens.tokens for h in handles], [h.tokens.selector for h in handles],
                                         handles[0].processed_hw, decode, handles[decode[0]].native_hw, clock=clock)
        c2w_out, K_out = self._native_poses(w2c, K, handles)
        m = maps.numpy()
        depth_np = {d: np.array(m[j, 0], dtype=np.float32, copy=True) for j, d in enumerate(decode)}
        conf_np = {d: np.array(m[j, 1], dtype=np.float32, copy=True) for j, d in enumerate(decode)}
        return WindowPrediction(c2w=c2w_out, intrinsics=K_out, depth=depth_np, confidence=conf_np,
                                pose_confidence=np.ones(S), metric=bool(self.metric), extras={})

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _frame_intrinsics(frames: Sequence[Frame]) -> Optional[np.ndarray]:
        Ks = [f.intrinsics for f in frames]
        if all(K is not None for K in Ks):
            return np.stack([np.asarray(K, dtype=np.float64) for K in Ks])
        return None

    def _default_intrinsics(self, S: int, H: int, W: int) -> torch.Tensor:
        if not self._warned_fov:
            warnings.warn(f"{self.name}: no intrinsics known; assuming a {DEFAULT_HFOV_DEG} deg horizontal FOV")
            self._warned_fov = True
        f = (W / 2) / math.tan(math.radians(DEFAULT_HFOV_DEG) / 2)
        K = torch.tensor([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], dtype=torch.float32, device=self.device)
        return K[None].repeat(S, 1, 1)
