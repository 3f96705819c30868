"""Pinhole camera helpers (OpenCV / REP 103 optical frame, pixels, z-depth)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def pixel_grid(width: int, height: int, stride: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (u, v) in pixels, sampled every `stride` pixels.
    Pixel (0,0) has its centre at (0,0) (the OpenCV convention: cx = (W-1)/2 is
    the exact image centre)."""
    u = np.arange(0, width, stride, dtype=np.float64)
    v = np.arange(0, height, stride, dtype=np.float64)
    return np.meshgrid(u, v)


def backproject(depth: np.ndarray, u: np.ndarray, v: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Points (...,3) in the optical frame from z-depth sampled at pixels (u, v)."""
    K = np.asarray(intrinsics, dtype=np.float64)
    z = np.asarray(depth, dtype=np.float64)
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    return np.stack([x, y, z], axis=-1)


def transform_points(T: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to points (...,3)."""
    T = np.asarray(T, dtype=np.float64)
    return x @ T[:3, :3].T + T[:3, 3]


def depth_to_points(
    depth: np.ndarray,
    intrinsics: np.ndarray,
    c2w: Optional[np.ndarray] = None,
    mask: Optional[np.ndarray] = None,
    stride: int = 1,
) -> Tuple[np.ndarray, np.ndarray]:
    """Back-project a depth map. Returns (points (N,3) float64, flat pixel
    indices (N,) into the full-resolution image) for pixels on the `stride`
    grid where `mask` holds (and depth is finite and > 0)."""
    h, w = depth.shape
    vs = np.arange(0, h, stride)
    us = np.arange(0, w, stride)
    d = depth[np.ix_(vs, us)]
    ok = np.isfinite(d) & (d > 0)
    if mask is not None:
        ok &= mask[np.ix_(vs, us)]
    vv, uu = np.nonzero(ok)
    v = vs[vv]
    u = us[uu]
    pts = backproject(d[vv, uu], u.astype(np.float64), v.astype(np.float64), intrinsics)
    if c2w is not None:
        pts = transform_points(c2w, pts)
    return pts, v * w + u


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics for an image resized by (sx, sy) (pixel-centre convention)."""
    K = np.asarray(K, dtype=np.float64).copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W[, C]) image resized to (height, width), bilinear, pixel-centre
    convention (as scale_intrinsics); the dtype is kept."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    y = np.clip((np.arange(height) + 0.5) * (h / height) - 0.5, 0, h - 1)
    x = np.clip((np.arange(width) + 0.5) * (w / width) - 0.5, 0, w - 1)
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (y - y0)[:, None], (x - x0)[None, :]
    if image.ndim == 3:
        wy, wx = wy[..., None], wx[..., None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    if np.issubdtype(image.dtype, np.integer):
        out = np.clip(np.rint(out), np.iinfo(image.dtype).min, np.iinfo(image.dtype).max)
    return out.astype(image.dtype)


def sample_bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Values of an (H, W) float image at sub-pixel (u, v) (pixel centres at
    integers), float64; NaN outside the image or where a neighbour is not finite.
    At integer (u, v) it is the pixel itself."""
    h, w = image.shape
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    uc, vc = np.clip(u, 0, w - 1), np.clip(v, 0, h - 1)
    u0, v0 = np.floor(uc).astype(np.int64), np.floor(vc).astype(np.int64)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu, fv = uc - u0, vc - v0
    def img(vv, uu):  # only the sampled pixels become float64, not the whole image
        return image[vv, uu].astype(np.float64)

    out = ((img(v0, u0) * (1 - fu) + img(v0, u1) * fu) * (1 - fv)
           + (img(v1, u0) * (1 - fu) + img(v1, u1) * fu) * fv)
    # a zero weight must not let a non-finite neighbour through (0 * inf)
    exact = (fu == 0) & (fv == 0)
    out[exact] = img(v0[exact], u0[exact])
    out[~inside] = np.nan
    return out
