"""What the streaming core checks at its two borders, before any state changes:
a frame coming in (`check_frame`) and a model's answer (`check_prediction`)."""

from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from ..geometry.transforms import is_rigid
from .interface import Frame, WindowPrediction


class FrameError(ValueError):
    """A frame the stream cannot take (wrong shape, dtype, non-finite values).
    Raised before any state changes."""


class ModelOutputError(RuntimeError):
    """The model's answer breaks the WindowPrediction contract. The window's
    new frames are dropped; the rest of the state is unchanged."""


def check_frame(frame: Any) -> None:
    """Raise FrameError unless `frame` is a Frame the stream can take."""
    if not isinstance(frame, Frame):
        raise FrameError(f"expected a Frame, got {type(frame).__name__}")
    img = frame.image
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise FrameError(f"image must be an HxWx3 array, got {getattr(img, 'shape', type(img))}")
    if img.dtype != np.uint8:
        raise FrameError(f"image must be uint8 RGB, got {img.dtype}")
    if img.shape[0] < 2 or img.shape[1] < 2:
        raise FrameError(f"image too small: {img.shape}")
    try:
        stamp = float(frame.stamp)
    except (TypeError, ValueError):
        raise FrameError(f"stamp must be a number of seconds, got {frame.stamp!r}") from None
    if not np.isfinite(stamp):
        raise FrameError("stamp is not finite")
    if frame.intrinsics is not None:
        K = np.asarray(frame.intrinsics)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise FrameError("intrinsics must be a finite 3x3 matrix with positive focal lengths")
    for name in ("c2w_external", "T_base_optical"):
        T = getattr(frame, name)
        if T is not None and not is_rigid(np.asarray(T, dtype=np.float64), tol=1e-3):
            raise FrameError(f"{name} must be a finite 4x4 rigid transform")


def check_prediction(pred: Any, frames: Sequence[Frame], decode: List[int]) -> None:
    """Raise ModelOutputError unless `pred` answers the window of `frames` with
    depth for the `decode` indices, at native resolution."""
    S = len(frames)
    if not isinstance(pred, WindowPrediction):
        raise ModelOutputError(f"model returned {type(pred).__name__}, not WindowPrediction")
    c2w = np.asarray(pred.c2w)
    K = np.asarray(pred.intrinsics)
    if c2w.shape != (S, 4, 4) or not np.all(np.isfinite(c2w)):
        raise ModelOutputError(f"c2w must be finite ({S},4,4), got {c2w.shape}")
    if K.shape != (S, 3, 3) or not np.all(np.isfinite(K)) or np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
        raise ModelOutputError(f"intrinsics must be finite ({S},3,3) with positive focals")
    if pred.pose_confidence is not None:
        pc = np.asarray(pred.pose_confidence)
        if pc.shape != (S,) or not np.all(np.isfinite(pc)) or np.any(pc < 0):
            raise ModelOutputError(f"pose_confidence must be finite, >= 0, shape ({S},)")
    for p in decode:
        hw = (frames[p].height, frames[p].width)
        if p not in pred.depth or p not in pred.confidence:
            raise ModelOutputError(f"no depth/confidence for decoded window index {p}")
        if pred.depth[p].shape != hw or pred.confidence[p].shape != hw:
            raise ModelOutputError(f"depth/confidence for index {p} must be {hw} (native resolution)")
