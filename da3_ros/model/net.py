"""The DA3 networks: `DA3Net` (any-view or monocular) and `NestedDA3Net`.

Two entry points share one implementation:

* `forward(images, extrinsics, intrinsics, pose_source, reference_strategy)`: the
  official raw contract on (B, S, 3, H, W) normalised images.
* `encode(images)` + `forward_window(cached, decode, ...)`: the streaming split.
  `encode` runs the strictly per-view part once per frame (patch embedding and
  blocks [0, alt_start)); `forward_window` runs the cross-view blocks on a window
  of cached frames, the depth branch only on `decode` and the camera / ray
  branch on every frame (poses for all; rays on the official map or a coarser
  one, `ray_map`). Because the official reference-view reordering only permutes
  views before a per-view block, caching the per-view output and reordering
  afterwards is exact. Its steps (`encode_tokens`, `forward_features`,
  `forward_depth`, `forward_pose`) are what the fast path (`fast.py`) captures.

Units: depth in the network's unit (arbitrary for any-view models; the metric
model outputs focal-normalised depth, metres = depth * f / 300 with f in pixels
of the network input); extrinsics are world-to-camera 3x4 (OpenCV), the world
being the reference view's camera; intrinsics in pixels of the network input.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .camera import CameraDecoder, CameraEncoder, decode_pose, invert_rigid
from .config import PATCH_SIZE, DA3Config, NestedConfig
from .dpt import DPT, DualDPT
from .ray_pose import denormalize_intrinsics, ray_map_grid, solve_rays
from .reference import reference_order
from .vit import Backbone

#: views needed before the official code picks a reference view
MIN_VIEWS_FOR_REFERENCE = 3
METRIC_FOCAL_NORM = 300.0  # DA3METRIC: metres = depth * focal_px / 300
SKY_THRESHOLD = 0.3
#: ray maps the pose solver can fit: the official one, the head's last stage at half resolution,
#: the head above the 2x level at a quarter of it (see `DualDPT.forward_rays`)
RAY_MAPS = ("full", "half", "quarter")
#: where a window's poses come from: the camera decoder on the camera tokens, or the ray head + solver
POSE_SOURCES = ("camera", "ray")
#: samples of the half-resolution ray map the solver fits (a regular sub-grid; the solver's
#: accuracy on the embedded model does not change between ~100 and 16384 evenly spread rays)
RAY_SOLVER_POINTS = 4096


@dataclass
class FrameTokens:
    """Per-frame cache produced by `encode` (one view).

    tokens: (T, D) output of the per-view blocks (autocast dtype).
    selector: (D,) token 0 entering the last per-view block (reference choice).
    image_hw: network input size (H, W) in pixels.
    feats: monocular models only, the 4 head inputs (P, C) fp32.
    metric: nested model only, the metric branch's `FrameTokens`.
    """

    tokens: Optional[torch.Tensor]
    selector: Optional[torch.Tensor]
    image_hw: tuple
    feats: Optional[List[torch.Tensor]] = None
    metric: Optional["FrameTokens"] = None

    def nbytes(self) -> int:
        ts = [self.tokens, self.selector] + list(self.feats or [])
        own = sum(t.numel() * t.element_size() for t in ts if t is not None)
        return own + (self.metric.nbytes() if self.metric is not None else 0)


def _amp_dtype(precision: Union[str, torch.dtype, None], device: torch.device) -> Optional[torch.dtype]:
    """Autocast dtype of the backbone for a precision request (None = fp32)."""
    if precision in (None, "fp32", torch.float32):
        return None
    if precision in ("fp16", torch.float16):
        return torch.float16
    if precision in ("bf16", torch.bfloat16, "auto"):
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        if precision == "auto" and device.type != "cuda":
            return None  # CPU autocast is slower than fp32 on most CPUs
        return torch.bfloat16
    raise ValueError(f"unknown precision {precision!r}: use fp32 | bf16 | fp16 | auto")


def quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    """torch.quantile (linear) on a flat tensor; deterministic stride-subsampling
    above torch's size limit."""
    x = x.reshape(-1)
    limit = 1 << 24
    if x.numel() > limit:
        x = x[:: (x.numel() + limit - 1) // limit]
    return torch.quantile(x.float(), q)


class DA3Net(nn.Module):
    """One DA3 network (any-view with Dual-DPT + camera head, or monocular DPT)."""

    def __init__(self, cfg: DA3Config):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg.vit)
        self.head = DualDPT(cfg.head) if cfg.head.kind == "dualdpt" else DPT(cfg.head)
        self.cam_dec = self.cam_enc = None
        if cfg.has_camera:
            self.cam_dec = CameraDecoder(cfg.vit.out_dim)
            self.cam_enc = CameraEncoder(cfg.vit.embed_dim)
        self.amp_dtype: Optional[torch.dtype] = None

    # ---------------------------------------------------------------- helpers
    @property
    def vit(self):
        return self.backbone.pretrained

    @property
    def is_metric(self) -> bool:
        return self.cfg.metric

    def set_precision(self, precision) -> "DA3Net":
        """fp32 | bf16 | fp16 | auto: autocast dtype of the backbone (heads stay fp32)."""
        self.amp_dtype = _amp_dtype(precision, next(self.parameters()).device)
        return self

    def _autocast(self, device: torch.device):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.amp_dtype)

    @staticmethod
    def _no_autocast(device: torch.device):
        return torch.autocast(device_type=device.type, enabled=False)

    # ---------------------------------------------------------------- features
    def encode_tokens(self, images: torch.Tensor, blocks=None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Any-view per-view work: images (N, 3, H, W) normalised -> (tokens (N, T, D), selector (N, D)).
        `blocks`: stand-ins for the ViT blocks (see `VisionTransformer.forward_early`)."""
        vit = self.vit
        with self._autocast(images.device):
            return vit.forward_early(vit.embed(images), blocks)

    def encode(self, images: torch.Tensor) -> List[FrameTokens]:
        """Per-view work for N frames. images (N, 3, H, W) normalised, H, W multiples of 14."""
        N, _, H, W = images.shape
        if self.cfg.any_view:
            x, sel = self.encode_tokens(images)
            return [FrameTokens(x[i], sel[i], (H, W)) for i in range(N)]
        with self._autocast(images.device):
            feats = self.vit.forward_mono(self.vit.embed(images))
        return [FrameTokens(None, None, (H, W), feats=[f[i] for f in feats]) for i in range(N)]

    def forward_features(self, tokens: torch.Tensor, selector: torch.Tensor, image_hw,
                         extrinsics: Optional[torch.Tensor] = None, intrinsics: Optional[torch.Tensor] = None,
                         reference_strategy: str = "saddle_balanced", views: Optional[torch.Tensor] = None,
                         blocks=None):
        """Cross-view part on cached tokens (B, S, T, D) -> (4 x patch features (B, n, P, C) fp32
        of `views` ((n,) long view indices, in that order; None: all S views in input order),
        camera tokens of all views (B, S, C) fp32 in input order).

        With `views`, the last (global) block answers only those views' tokens and the camera
        tokens. No host synchronisation (the reference view is chosen on the device)."""
        B, S = tokens.shape[:2]
        H, W = image_hw
        cam_token = None
        if extrinsics is not None:
            if intrinsics is None or self.cam_enc is None:
                raise ValueError("pose conditioning needs both extrinsics and intrinsics (any-view models)")
            with self._no_autocast(tokens.device):
                cam_token = self.cam_enc(extrinsics, intrinsics, (H, W))
        order = inv = keep = None
        if cam_token is None and S >= MIN_VIEWS_FOR_REFERENCE:
            order = reference_order(selector, reference_strategy)  # (B, S)
            tokens = torch.gather(tokens, 1, order[:, :, None, None].expand_as(tokens))
            inv = torch.argsort(order, dim=1)  # position of each input view in the reordered window
            if views is not None:
                keep = inv.index_select(1, views)
        elif views is not None:
            keep = views[None].expand(B, -1)
        with self._autocast(tokens.device):
            feats, cam = self.vit.forward_late(tokens, H // PATCH_SIZE, W // PATCH_SIZE, cam_token, keep, blocks)
        if inv is not None:
            cam = torch.gather(cam, 1, inv[:, :, None].expand_as(cam))
            if views is None:
                feats = [torch.gather(f, 1, inv[:, :, None, None].expand_as(f)) for f in feats]
        return feats, cam

    # ---------------------------------------------------------------- heads
    # One head path: `forward_heads` (the official contract, the plain window path) is
    # `forward_depth` and `forward_pose`, the two stages the fast path runs; the official
    # contract's ray maps come from the stem its depth reads, and give its ray poses.
    # Every ray pose is solved by `ray_poses`, the one solver setting.

    def _stem(self, feats: List[torch.Tensor], image_hw) -> List[torch.Tensor]:
        """The Dual-DPT's shared stem on the views of `feats` (4 x (B, n, P, C)), flat (B*n, ...)."""
        return self.head.stem([f.flatten(0, 1) for f in feats], *image_hw)

    def forward_depth(self, feats: List[torch.Tensor], image_hw,
                      rn: Optional[List[torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Dual-DPT depth branch (fp32) on the views of `feats` (4 x (B, n, P, C)) ->
        depth, depth_conf (B, n, H, W). `rn`: those views' stem (`_stem`) when already run."""
        H, W = image_hw
        B, n = feats[0].shape[:2]
        with self._no_autocast(feats[0].device):
            depth, conf = self.head.forward_depth(self._stem(feats, image_hw) if rn is None else rn, H, W)
        return depth.unflatten(0, (B, n)), conf.unflatten(0, (B, n))

    def forward_rays(self, feats: List[torch.Tensor], image_hw, ray_map: str = "full",
                     rn: Optional[List[torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Ray head (fp32) on the views of `feats` (4 x (B, n, P, C)) -> ray (B, n, h, w, 6),
        ray_conf (B, n, h, w) on the official map ("full", 8 x the patch grid) or a coarser one
        ("half", "quarter": see `forward_pose`). `rn` as in `forward_depth` (full and half)."""
        if ray_map not in RAY_MAPS:
            raise ValueError(f"ray_map must be one of {RAY_MAPS}, got {ray_map!r}")
        H, W = image_hw
        B, n = feats[0].shape[:2]
        with self._no_autocast(feats[0].device):
            if ray_map == "quarter":
                ray, conf = self.head.forward_rays_quarter([f.flatten(0, 1) for f in feats], H, W)
            else:
                rn = self._stem(feats, image_hw) if rn is None else rn
                ray, conf = self.head.forward_rays(rn, H, W, half=ray_map == "half")
        return ray.unflatten(0, (B, n)), conf.unflatten(0, (B, n))

    def forward_pose(self, feats: Optional[List[torch.Tensor]], cam: Optional[torch.Tensor], image_hw,
                     pose_source: str = "camera", ray_map: str = "full",
                     rays: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Poses of all S views (fp32) -> world-to-camera (B, S, 3, 4), intrinsics (B, S, 3, 3)
        in pixels of the network input.

        "camera": the camera decoder on the camera tokens `cam` (B, S, C).
        "ray": the ray head on every view's features (4 x (B, S, P, C)) + the solver, on the
        official ray map (`ray_map` "full", 8 x the patch grid), or on a coarser one: "half"
        (the head's last stage on the 4 x grid, `DualDPT.forward_rays(half=True)`) or
        "quarter" (nothing above the 2 x grid, `DualDPT.forward_rays_quarter`), each fitted at
        its samples' true image positions (`ray_map_grid`, at most RAY_SOLVER_POINTS of them).
        The coarse maps are approximations: the solver fits a 3x3 homography and a centre per
        view and does not need the official map's 62k rays (validated on the embedded model:
        test/runtime/test_ray_pose_guard.py). `rays`: every view's (ray, ray_conf) on
        `ray_map`'s grid, when already computed."""
        if pose_source not in POSE_SOURCES:
            raise ValueError(f"pose_source must be 'camera' or 'ray', got {pose_source!r}")
        H, W = image_hw
        if pose_source == "camera":
            with self._no_autocast(cam.device):
                c2w, K = decode_pose(self.cam_dec(cam), (H, W))
            return invert_rigid(c2w), K
        ray, conf = self.forward_rays(feats, image_hw, ray_map) if rays is None else rays
        with self._no_autocast(ray.device):
            return self.ray_poses(ray, conf, H, W)

    @staticmethod
    def ray_poses(ray: torch.Tensor, conf: torch.Tensor, H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The one ray solver setting: ray maps (B, S, h, w, 6) of any resolution ->
        world-to-camera (B, S, 3, 4), intrinsics (B, S, 3, 3) in network-input pixels. The
        official map (8 x the patch grid) is fitted on at most 16384 pixel-centre samples, a
        coarser one on at most RAY_SOLVER_POINTS samples at their true positions."""
        B, S, h, w = ray.shape[:4]
        factor = 8 * (H // PATCH_SIZE) // h
        grid = ray_map_grid(h, w, factor, ray.device)
        c2w, K_n, _ = solve_rays(ray.flatten(0, 1), conf.flatten(0, 1),
                                 max_points=16384 if factor == 1 else RAY_SOLVER_POINTS, grid=grid)
        K = denormalize_intrinsics(K_n, H, W)
        K[:, 0, 1] = 0.0  # pinhole without skew, as the official solver reports
        return invert_rigid(c2w).unflatten(0, (B, S)), K.unflatten(0, (B, S))

    def forward_heads(self, feats: List[torch.Tensor], cam: Optional[torch.Tensor], image_hw,
                      decode: Optional[Sequence[int]] = None, pose_source: str = "camera", ray_map: str = "full",
                      rays: bool = False) -> Dict[str, torch.Tensor]:
        """The heads, fp32. feats: 4 x (B, n, P, C), the head inputs of the views the heads
        need (every view of the window for ray poses); cam: the camera tokens (B, S, C) of
        every view; decode: positions in `feats` to answer depth for (None: all).

        -> depth, depth_conf (B, len(decode), H, W) (`forward_depth`); extrinsics (B, S, 3, 4)
        world-to-camera and intrinsics (B, S, 3, 3) of every view (`forward_pose`); with `rays`
        (the official contract) also the official ray maps ray, ray_conf of the decoded views,
        which give the ray poses when every view is decoded on the full map. Monocular models:
        depth and sky of the decoded views."""
        n = feats[0].shape[1]
        dec = list(range(n)) if decode is None else [int(d) for d in decode]
        dec_feats = feats if dec == list(range(n)) else [f[:, dec] for f in feats]
        if isinstance(self.head, DPT):
            return self._mono_heads(dec_feats, image_hw)
        out: Dict[str, torch.Tensor] = {}
        rn = None
        if rays:
            with self._no_autocast(feats[0].device):
                rn = self._stem(dec_feats, image_hw)  # depth reads it too
            out["ray"], out["ray_conf"] = self.forward_rays(dec_feats, image_hw, "full", rn)
        if dec:
            out["depth"], out["depth_conf"] = self.forward_depth(dec_feats, image_hw, rn)
        known = (out["ray"], out["ray_conf"]) if rays and ray_map == "full" and len(dec) == n else None
        out["extrinsics"], out["intrinsics"] = self.forward_pose(feats, cam, image_hw, pose_source, ray_map, known)
        return out

    def _mono_heads(self, feats: List[torch.Tensor], image_hw) -> Dict[str, torch.Tensor]:
        """Monocular DPT head (fp32) on the views of `feats` -> depth and sky (B, n, H, W)."""
        B, n = feats[0].shape[:2]
        with self._no_autocast(feats[0].device):
            out = self.head([f.flatten(0, 1) for f in feats], *image_hw)
        return {k: v.unflatten(0, (B, n)) for k, v in out.items()}

    # ---------------------------------------------------------------- public
    def forward(self, images: torch.Tensor, extrinsics: Optional[torch.Tensor] = None,
                intrinsics: Optional[torch.Tensor] = None, pose_source: str = "camera",
                reference_strategy: str = "saddle_balanced") -> Dict[str, torch.Tensor]:
        """Official raw contract. images (B, S, 3, H, W) normalised; extrinsics (B, S, 3|4, 4)
        world-to-camera and intrinsics (B, S, 3, 3) pixels for pose conditioning.

        Returns depth (B, S, H, W), depth_conf, ray (B, S, 8H/14, 8W/14, 6), ray_conf,
        extrinsics (B, S, 3, 4) world-to-camera, intrinsics (B, S, 3, 3); monocular
        models: depth and sky (B, S, H, W).
        """
        B, S, _, H, W = images.shape
        cached = self.encode(images.flatten(0, 1))
        if not self.cfg.any_view:
            feats = [torch.stack([c.feats[i] for c in cached]).unflatten(0, (B, S)) for i in range(4)]
            return mono_sky_fill(self.forward_heads(feats, None, (H, W)))
        tokens = torch.stack([c.tokens for c in cached]).unflatten(0, (B, S))
        sel = torch.stack([c.selector for c in cached]).unflatten(0, (B, S))
        feats, cam = self.forward_features(tokens, sel, (H, W), extrinsics, intrinsics, reference_strategy)
        return self.forward_heads(feats, cam, (H, W), None, pose_source, "full", rays=True)

    @staticmethod
    def window_views(S: int, decode: Sequence[int], pose_source: str) -> List[int]:
        """The views whose head inputs a window needs: every view for ray poses, else the decoded ones."""
        return list(range(S)) if pose_source == "ray" else [int(d) for d in decode]

    def forward_window(self, cached: Sequence[FrameTokens], decode: Sequence[int], pose_source: str = "camera",
                       reference_strategy: str = "saddle_balanced", extrinsics: Optional[torch.Tensor] = None,
                       intrinsics: Optional[torch.Tensor] = None,
                       ray_map: str = "full") -> Dict[str, torch.Tensor]:
        """One window of S cached frames (batch 1). Depth for `decode` only ((1, len(decode), H, W)),
        extrinsics / intrinsics for all S frames ((1, S, ...)). Conditioning as in `forward`;
        `ray_map` as in `forward_pose`. The fast path (`da3_ros.model.fast`) runs these same
        steps (`forward_features`, then `forward_heads`' `forward_depth` and `forward_pose`) as
        captured stages."""
        hw = cached[0].image_hw
        if any(c.image_hw != hw for c in cached):
            raise ValueError("all frames of a window must share the network input size")
        if not self.cfg.any_view:
            feats = [torch.stack([cached[d].feats[i] for d in decode])[None] for i in range(4)]
            return mono_sky_fill(self.forward_heads(feats, None, hw))
        tokens = torch.stack([c.tokens for c in cached])[None]
        sel = torch.stack([c.selector for c in cached])[None]
        views = self.window_views(len(cached), decode, pose_source)
        feats, cam = self.forward_features(tokens, sel, hw, extrinsics, intrinsics, reference_strategy,
                                           views=torch.tensor(views, dtype=torch.long, device=tokens.device))
        return self.forward_heads(feats, cam, hw, [views.index(int(d)) for d in decode], pose_source, ray_map)


def mono_sky_fill(out: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Monocular models: sky pixels (sky >= 0.3) get the 99th percentile of non-sky depth
    (official behaviour; skipped when either region has <= 10 pixels)."""
    if "sky" not in out:
        return out
    non_sky = out["sky"] < SKY_THRESHOLD
    n_non = int(non_sky.sum())
    if n_non <= 10 or non_sky.numel() - n_non <= 10:
        return out
    far = quantile(out["depth"][non_sky], 0.99)
    out = dict(out)
    out["depth"] = torch.where(non_sky, out["depth"], far)
    return out


def metric_depth(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """DA3METRIC output (..., H, W) -> metres, with intrinsics (..., 3, 3) in network-input pixels."""
    f = (intrinsics[..., 0, 0] + intrinsics[..., 1, 1]) / 2
    return depth * (f[..., None, None] / METRIC_FOCAL_NORM)


class NestedDA3Net(nn.Module):
    """Any-view giant + metric large; the any-view depth and translations are scaled to
    metres by one least-squares factor over confident non-sky pixels."""

    def __init__(self, cfg: NestedConfig):
        super().__init__()
        self.cfg = cfg
        self.da3 = DA3Net(cfg.anyview)
        self.da3_metric = DA3Net(cfg.metric)

    is_metric = True

    def set_precision(self, precision) -> "NestedDA3Net":
        self.da3.set_precision(precision)
        self.da3_metric.set_precision(precision)
        return self

    def encode(self, images: torch.Tensor) -> List[FrameTokens]:
        main = self.da3.encode(images)
        for m, t in zip(main, self.da3_metric.encode(images)):
            m.metric = t
        return main

    @staticmethod
    def align(out: Dict[str, torch.Tensor], metric_out: Dict[str, torch.Tensor],
              sky_depth_cap: float = 200.0) -> Dict[str, torch.Tensor]:
        """Scale `out` (any-view) to the metric branch; fill sky. Returns a new dict."""
        out = dict(out)
        mdepth = metric_depth(metric_out["depth"], out["intrinsics"])
        non_sky = metric_out["sky"] < SKY_THRESHOLD
        if int(non_sky.sum()) <= 10:
            raise RuntimeError("nested alignment: fewer than 11 non-sky pixels")
        conf, depth = out["depth_conf"], out["depth"]
        med = quantile(conf[non_sky], 0.5)
        mask = (conf >= med) & non_sky & (mdepth > 1e-2) & (depth > 1e-3)
        a, b = mdepth[mask], depth[mask]
        scale = torch.dot(a, b) / torch.dot(b, b).clamp_min(1e-12)
        depth = depth * scale
        ext = out["extrinsics"].clone()
        ext[..., :3, 3] = ext[..., :3, 3] * scale
        far = torch.clamp(quantile(depth[non_sky], 0.99), max=sky_depth_cap)
        out["depth"] = torch.where(non_sky, depth, far)
        out["depth_conf"] = torch.where(non_sky, conf, torch.ones_like(conf))
        out["extrinsics"], out["scale_factor"], out["sky"] = ext, scale, metric_out["sky"]
        return out

    def forward(self, images: torch.Tensor, extrinsics=None, intrinsics=None, pose_source: str = "camera",
                reference_strategy: str = "saddle_balanced") -> Dict[str, torch.Tensor]:
        out = self.da3(images, extrinsics, intrinsics, pose_source, reference_strategy)
        return self.align(out, self.da3_metric(images))

    def forward_window(self, cached: Sequence[FrameTokens], decode: Sequence[int], pose_source: str = "camera",
                       reference_strategy: str = "saddle_balanced", extrinsics=None, intrinsics=None,
                       ray_map: str = "full"):
        """As `DA3Net.forward_window`; the scale is fitted on the decoded frames only
        (equal to the full forward when every frame is decoded)."""
        out = self.da3.forward_window(cached, decode, pose_source, reference_strategy, extrinsics, intrinsics,
                                      ray_map)
        if not decode:  # no depth to fit a scale on: poses stay in the any-view unit
            return out
        mout = self.da3_metric.forward_window([c.metric for c in cached], decode)
        sub = dict(out)
        sub["intrinsics"] = out["intrinsics"][:, list(decode)]
        aligned = self.align(sub, mout)
        aligned["intrinsics"] = out["intrinsics"]
        scale = aligned["scale_factor"]
        aligned["extrinsics"] = out["extrinsics"].clone()
        aligned["extrinsics"][..., :3, 3] *= scale
        return aligned


DA3Model = Union[DA3Net, NestedDA3Net]


def build_model(cfg: Union[DA3Config, NestedConfig]) -> DA3Model:
    """Randomly initialised (torch default init) network of a config; eval mode."""
    net = NestedDA3Net(cfg) if isinstance(cfg, NestedConfig) else DA3Net(cfg)
    return net.eval()
