"""Official DA3 input preprocessing, done in torch on the model's device, and the
maps from the network's input resolution back to a camera's native resolution.

Sizes: the longest side goes to `process_res` (504), then each side to the nearest
multiple of 14 (ties round up): 640x480 -> 504x378, 1920x1080 -> 504x280.
The official package resizes twice with OpenCV (cubic up / area down, then a
small resize to the multiple of 14); here one resize straight to the final size
(bicubic up / area down) on the device: outputs differ from the official
preprocessing by resampling noise only.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .config import PATCH_SIZE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_PROCESS_RES = 504


def _nearest_multiple(x: int, p: int = PATCH_SIZE) -> int:
    down = (x // p) * p
    up = down + p
    return max(p, up if abs(up - x) <= abs(x - down) else down)


def processed_size(height: int, width: int, process_res: int = DEFAULT_PROCESS_RES) -> Tuple[int, int]:
    """Network input (H, W) for a native (height, width) image."""
    scale = process_res / max(height, width)
    h = max(1, int(round(height * scale)))
    w = max(1, int(round(width * scale)))
    return _nearest_multiple(h), _nearest_multiple(w)


def _to_device_uint8(frame: Union[np.ndarray, torch.Tensor], device) -> torch.Tensor:
    if isinstance(frame, np.ndarray):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be HxWx3 uint8 RGB, got {frame.dtype} {frame.shape}")
        # a decoded message buffer is read-only: torch tensors must own writable memory
        t = torch.from_numpy(np.ascontiguousarray(frame) if frame.flags.writeable else np.array(frame))
        if torch.device(device).type == "cuda":
            t = t.pin_memory()
        return t.to(device, non_blocking=True)
    return frame.to(device)


_NORM_CACHE: dict = {}


def _mean_std(device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean / std (1, 3, 1, 1) in [0, 255] units on `device`, made once per device
    (so a CUDA-graph capture of `network_input` copies nothing from the host)."""
    key = str(device)
    if key not in _NORM_CACHE:
        with torch.inference_mode(False):
            mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1) * 255.0
            std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1) * 255.0
        _NORM_CACHE[key] = (mean, std)
    return _NORM_CACHE[key]


def network_input(images: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """THE preprocessing: (N, h, w, 3) uint8 RGB on the model's device -> (N, 3, H, W) float32
    ImageNet-normalised at the network size `size` = (H, W) (`processed_size`): bicubic
    (clamped to [0, 255]) when enlarging, area when shrinking."""
    img = images.permute(0, 3, 1, 2).float()  # (N, 3, h, w) in [0, 255]
    h, w = img.shape[-2:]
    H, W = size
    if (H, W) != (h, w):
        if H > h or W > w:
            img = F.interpolate(img, size=(H, W), mode="bicubic", align_corners=False).clamp_(0, 255)
        else:
            img = F.interpolate(img, size=(H, W), mode="area")
    mean, std = _mean_std(img.device)
    return (img - mean) / std


def preprocess(frames: Sequence[Union[np.ndarray, torch.Tensor]], device: Union[str, torch.device] = "cpu",
               process_res: int = DEFAULT_PROCESS_RES) -> torch.Tensor:
    """HxWx3 uint8 RGB frames (same processed size) -> (N, 3, H, W) float32 normalised on `device`."""
    device = torch.device(device)
    out: List[torch.Tensor] = []
    size = None
    for f in frames:
        img = _to_device_uint8(f, device)
        hw = processed_size(img.shape[0], img.shape[1], process_res)
        if size is None:
            size = hw
        elif hw != size:
            raise ValueError(f"frames of one call must map to one network size: {size} vs {hw}")
        out.append(network_input(img[None], hw))
    return torch.cat(out, 0)


def intrinsics_to_processed(K: np.ndarray, native_hw: Tuple[int, int], processed_hw: Tuple[int, int]) -> np.ndarray:
    """(..., 3, 3) pixels of the native image -> pixels of the network input (row scaling, official)."""
    sx = processed_hw[1] / native_hw[1]
    sy = processed_hw[0] / native_hw[0]
    S = np.diag([sx, sy, 1.0])
    return S @ np.asarray(K, dtype=np.float64)


def intrinsics_to_native(K: Union[np.ndarray, torch.Tensor], processed_hw: Tuple[int, int],
                         native_hw: Tuple[int, int]) -> np.ndarray:
    """(..., 3, 3) pixels of the network input -> float64 pixels of the native image."""
    if isinstance(K, torch.Tensor):
        K = K.detach().double().cpu().numpy()
    sx = native_hw[1] / processed_hw[1]
    sy = native_hw[0] / processed_hw[0]
    return np.diag([sx, sy, 1.0]) @ np.asarray(K, dtype=np.float64)


def map_to_native(x: torch.Tensor, native_hw: Tuple[int, int]) -> torch.Tensor:
    """(N, H, W) per-pixel maps (z-depth, confidence) -> (N, h, w) bilinear at native size.

    z-depth does not change with image scaling, so values are only resampled.
    """
    if tuple(x.shape[-2:]) == tuple(native_hw):
        return x
    return F.interpolate(x[:, None].float(), size=tuple(native_hw), mode="bilinear", align_corners=False)[:, 0]
