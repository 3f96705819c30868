"""The pinhole intrinsics a sensor_msgs/CameraInfo gives for the images it comes with.

Works on any message object with CameraInfo's ROS 2 field names (rclpy messages and
rosbags-deserialised ones alike), so the node and the offline bag reader share one
reading of the message:

* K (raw images) or, for rectified images (image_proc's `image_rect`), the left 3x3
  of P: the calibration of a rectified image is P, not K;
* binning and region of interest (sensor_msgs/CameraInfo, REP 104): the
  calibration is for the full-resolution sensor; an image read out with ROI
  (x_offset, y_offset, width, height) and binning (bx, by) is roi.width / bx by
  roi.height / by pixels, and its principal point moves with the ROI and shrinks
  with the binning;
* an image of another size: the same aspect ratio is taken as a resized stream
  (intrinsics scaled, said in a note); another aspect ratio is another resolution
  mode of the camera, and the CameraInfo is refused.

Binning and resizing scale the principal point as image_geometry and image_proc's
resize do (c / b), not about pixel centres ((c + 0.5) / b - 0.5): the two differ by
under half a pixel, and matching the ecosystem matters more.

Everything it cannot use raises CameraInfoError with what was wrong.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np

#: aspect ratios closer than this (relative) are taken as the same (rounded sizes)
ASPECT_TOLERANCE = 0.01


class CameraInfoError(ValueError):
    """A CameraInfo that cannot describe the images it comes with."""


def _matrix(msg, rectified: bool) -> np.ndarray:
    if rectified:
        P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
        if not np.any(P):
            raise CameraInfoError("CameraInfo P is all zeros, but the images are declared rectified (P describes them)")
        return P[:, :3].copy()
    return np.asarray(msg.k, dtype=np.float64).reshape(3, 3).copy()


def camera_info_intrinsics(msg, width: int, height: int, rectified: bool = False) -> Tuple[np.ndarray, List[str]]:
    """(3x3 K in pixels of the width x height image, notes) from a CameraInfo.

    `rectified`: the images are rectified, so the calibration is P's left 3x3.
    Notes are remarks for the user (intrinsics scaled to another image size,
    distortion on images taken as raw); problems raise CameraInfoError."""
    name = "P" if rectified else "K"
    K = _matrix(msg, rectified)
    if not np.all(np.isfinite(K)):
        raise CameraInfoError(f"CameraInfo {name} has non-finite entries: {K.ravel().tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise CameraInfoError(f"CameraInfo {name} has non-positive focal lengths fx={K[0, 0]}, fy={K[1, 1]} "
                              "(uncalibrated camera?)")
    if K[2, 2] != 1 or K[1, 0] or K[2, 0] or K[2, 1]:
        raise CameraInfoError(f"CameraInfo {name} is not an upper-triangular pinhole matrix: {K[:3, :3].ravel().tolist()}")
    if not msg.width or not msg.height:
        raise CameraInfoError(f"CameraInfo gives no image size ({msg.width}x{msg.height})")
    if not (0 <= K[0, 2] <= msg.width and 0 <= K[1, 2] <= msg.height):
        # (checked on the calibrated image: a ROI may well leave the principal point outside)
        raise CameraInfoError(f"CameraInfo principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) lies outside the "
                              f"calibrated {msg.width}x{msg.height} image")
    notes: List[str] = []
    # region of interest, in full-resolution pixels (all zeros: the full image)
    roi = msg.roi
    if roi.width and roi.height:
        x0, y0, full_w, full_h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    else:
        x0, y0, full_w, full_h = 0, 0, int(msg.width), int(msg.height)
    bx, by = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    K[0, 2] -= x0
    K[1, 2] -= y0
    K[0, :] /= bx
    K[1, :] /= by
    described_w, described_h = full_w // bx, full_h // by
    if (described_w, described_h) != (width, height):
        what = f"CameraInfo describes {described_w}x{described_h} images"
        if (bx, by) != (1, 1) or (x0, y0, full_w, full_h) != (0, 0, int(msg.width), int(msg.height)):
            what += f" (calibrated {msg.width}x{msg.height}, roi {full_w}x{full_h}+{x0}+{y0}, binning {bx}x{by})"
        aspect, image_aspect = described_w / described_h, width / height
        if abs(aspect / image_aspect - 1.0) > ASPECT_TOLERANCE:
            raise CameraInfoError(f"{what} but the image is {width}x{height}, another aspect ratio "
                                  "(another resolution mode of the camera?)")
        sx, sy = width / described_w, height / described_h
        K[0, :] *= sx
        K[1, :] *= sy
        notes.append(f"{what} but the image is {width}x{height}: intrinsics scaled by {sx:.4g} (same aspect ratio)")
    d = np.asarray(msg.d, dtype=np.float64)
    if not rectified and d.size and np.any(d != 0):
        notes.append(f"CameraInfo has {msg.distortion_model or 'unnamed'} distortion {np.round(d, 4).tolist()}: the "
                     "network assumes pinhole images; rectify them upstream (image_proc's image_rect) and declare "
                     "them rectified (node parameter input_rectified, run-offline --input-rectified) so P is used")
    return K, notes


class CameraInfoReader:
    """`camera_info_intrinsics` for one stream, with each remark said once: `read`
    returns only the notes (and `fresh` only the texts) not returned before, so a
    setup remark is not repeated on every frame (at most `remember` texts kept)."""

    def __init__(self, rectified: bool = False, remember: int = 64):
        self.rectified = rectified
        self._said: set = set()
        self._remember = remember

    def fresh(self, texts: List[str]) -> List[str]:
        out = []
        for t in texts:
            if t not in self._said and len(self._said) < self._remember:
                self._said.add(t)
                out.append(t)
        return out

    def read(self, msg, width: int, height: int) -> Tuple[np.ndarray, List[str]]:
        """(K, new notes); raises CameraInfoError like `camera_info_intrinsics`."""
        K, notes = camera_info_intrinsics(msg, width, height, self.rectified)
        return K, self.fresh(notes)


__all__ = ["CameraInfoError", "CameraInfoReader", "camera_info_intrinsics", "ASPECT_TOLERANCE"]
