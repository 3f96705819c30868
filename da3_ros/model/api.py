"""High-level one-shot inference: uint8 frames in, numpy prediction out."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .camera import invert_rigid
from .net import DA3Net, NestedDA3Net, metric_depth
from .preprocess import (DEFAULT_PROCESS_RES, intrinsics_to_native, intrinsics_to_processed, map_to_native,
                         preprocess)


@dataclass
class Prediction:
    """Outputs at the network's input resolution (`processed_hw`), like the official API.

    depth, conf, sky: (N, H, W) float32; extrinsics (N, 3, 4) world-to-camera and
    intrinsics (N, 3, 3) in processed pixels (None for monocular models without given
    cameras). Use the `native_*` helpers for the cameras' own resolution.
    """

    depth: np.ndarray
    conf: Optional[np.ndarray]
    extrinsics: Optional[np.ndarray]
    intrinsics: Optional[np.ndarray]
    processed_hw: Tuple[int, int]
    native_hw: List[Tuple[int, int]]
    is_metric: bool = False
    sky: Optional[np.ndarray] = None
    scale_factor: Optional[float] = None
    extras: dict = field(default_factory=dict)

    def native_depth(self, i: int) -> np.ndarray:
        """(h, w) float32 z-depth of frame i at its native resolution."""
        return map_to_native(torch.from_numpy(self.depth[i:i + 1]), self.native_hw[i])[0].numpy()

    def native_conf(self, i: int) -> np.ndarray:
        return map_to_native(torch.from_numpy(self.conf[i:i + 1]), self.native_hw[i])[0].numpy()

    def native_intrinsics(self) -> np.ndarray:
        """(N, 3, 3) float64 intrinsics in pixels of each frame's native resolution."""
        return np.stack([intrinsics_to_native(K, self.processed_hw, hw)
                         for K, hw in zip(self.intrinsics, self.native_hw)])

    @property
    def c2w(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-world."""
        w2c = np.tile(np.eye(4), (len(self.extrinsics), 1, 1))
        w2c[:, :3] = self.extrinsics
        return np.linalg.inv(w2c)


def normalize_poses(c2w: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Official conditioning normalisation: world = first camera, translations / median
    camera distance (floored at 0.1). c2w (S, 4, 4) -> (w2c_normalised, first c2w, median)."""
    w2c = invert_rigid(c2w)
    rel = w2c @ c2w[:1]  # world-to-camera with the first camera as world
    dist = invert_rigid(rel)[:, :3, 3].norm(dim=-1)
    med = torch.clamp(torch.median(dist), min=1e-1)
    rel = rel.clone()
    rel[:, :3, 3] = rel[:, :3, 3] / med
    return rel, c2w[0], med


def denormalize_w2c(w2c_norm: torch.Tensor, c2w_first: torch.Tensor, med: torch.Tensor) -> torch.Tensor:
    """Inverse of `normalize_poses` for predicted world-to-camera (S, 3|4, 4) -> caller's world."""
    A = torch.eye(4, dtype=w2c_norm.dtype, device=w2c_norm.device).repeat(w2c_norm.shape[0], 1, 1)
    A[:, :3, :3] = w2c_norm[:, :3, :3]
    A[:, :3, 3] = w2c_norm[:, :3, 3] * med
    return A @ invert_rigid(c2w_first.to(A.dtype))[None]


def to_callers_world(out: Dict[str, torch.Tensor], cond, depth: Optional[torch.Tensor], w2c: torch.Tensor):
    """An answer to given poses (`cond` = `normalize_poses` of them) -> its depth and
    world-to-camera (S, 4, 4) in the caller's frame and unit (a nested model's metric
    scale gives way to the caller's unit)."""
    if "scale_factor" in out:  # nested + given poses: the caller's unit wins over the metric branch
        sf = out["scale_factor"]
        depth, w2c = (None if depth is None else depth / sf), w2c.clone()
        w2c[:, :3, 3] = w2c[:, :3, 3] / sf
    return (None if depth is None else depth * cond[2]), denormalize_w2c(w2c, cond[1], cond[2])


@torch.inference_mode()
def infer(model, frames: Sequence[np.ndarray], intrinsics: Optional[np.ndarray] = None,
          poses: Optional[np.ndarray] = None, process_res: int = DEFAULT_PROCESS_RES,
          pose_source: str = "camera", reference_strategy: str = "saddle_balanced") -> Prediction:
    """Run a DA3 network on frames of one scene.

    frames: HxWx3 uint8 RGB (all mapping to one network size).
    intrinsics: (N, 3, 3) native pixels, optional. poses: (N, 4, 4) camera-to-world,
        optional; with intrinsics they condition the network and the answer comes
        back in their frame and unit (depth scaled accordingly).
    Metric model (DA3METRIC): depth is converted to metres when intrinsics are given.
    """
    device = next(model.parameters()).device
    images = preprocess(frames, device, process_res)
    N, _, H, W = images.shape
    native = [tuple(int(s) for s in f.shape[:2]) for f in frames]
    K_proc = None
    if intrinsics is not None:
        K_proc = torch.tensor(np.stack([intrinsics_to_processed(K, hw, (H, W)) for K, hw in zip(intrinsics, native)]),
                              dtype=torch.float32, device=device)
    net = model.da3 if isinstance(model, NestedDA3Net) else model
    cond = None
    if poses is not None:
        if K_proc is None or not net.cfg.any_view:
            raise ValueError("pose conditioning needs intrinsics and an any-view model")
        cond = normalize_poses(torch.as_tensor(np.asarray(poses), dtype=torch.float32, device=device))
    out = model(images[None], None if cond is None else cond[0][None], None if cond is None else K_proc[None],
                pose_source=pose_source, reference_strategy=reference_strategy)
    depth = out["depth"][0]
    is_metric = isinstance(model, NestedDA3Net)
    ext = out.get("extrinsics")
    K_out = out.get("intrinsics")
    if ext is not None:
        ext, K_out = ext[0], K_out[0]
        if cond is not None:
            is_metric = is_metric and "scale_factor" not in out
            depth, ext = to_callers_world(out, cond, depth, ext)
            ext = ext[:, :3]
    elif K_proc is not None:
        K_out = K_proc
    if isinstance(model, DA3Net) and model.is_metric:
        if K_proc is not None:
            depth, is_metric = metric_depth(depth, K_proc), True
        else:
            warnings.warn("DA3METRIC without intrinsics: depth left focal-normalised (metres = depth * f / 300)")
    conf = out.get("depth_conf")
    sky = out.get("sky")
    sf = out.get("scale_factor")
    return Prediction(
        depth=depth.float().cpu().numpy(),
        conf=None if conf is None else conf[0].float().cpu().numpy(),
        extrinsics=None if ext is None else ext.double().cpu().numpy(),
        intrinsics=None if K_out is None else K_out.double().cpu().numpy(),
        processed_hw=(H, W), native_hw=native, is_metric=is_metric,
        sky=None if sky is None else sky[0].float().cpu().numpy(),
        scale_factor=None if sf is None else float(sf),
    )
