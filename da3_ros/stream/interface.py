"""The contract between the streaming core and any window model.

The streaming core never sees tensors or network internals. It hands the model
one `Frame` at a time to `encode` (the model keeps whatever per-frame cache it
wants inside the returned handle; dropping the handle frees it), and asks for a
`WindowPrediction` over a list of handles. The DA3 network (its streaming API),
the synthetic oracle and the noisy oracle all implement `WindowModel`.

Conventions (all of them OpenCV / REP 103 optical frame):
  * poses are camera-to-world 4x4 (`c2w`), x right, y down, z forward;
  * intrinsics are 3x3 pinhole matrices in pixels of the frame's NATIVE
    resolution (the camera's own width and height);
  * depth is z-depth (not range) at native resolution, float32;
  * confidence is DA3's (>= 1, larger is better), float32, native resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass
class Frame:
    """One camera image entering the stream.

    index: running frame number assigned by the stream (0, 1, 2, ...).
    stamp: capture time in seconds (the image header stamp).
    image: HxWx3 uint8 RGB.
    intrinsics: 3x3 pixels at native resolution when known (CameraInfo), else None.
    c2w_external: 4x4 camera-to-world of the optical frame from an external
        odometry source (metres, its own world frame), else None.
    T_base_optical: 4x4 fixed transform of the optical frame in the robot's base
        frame (maps optical coordinates into the base; from /tf_static), else
        None (the camera's own REP 103 body frame is the base). The first
        answered frame's base becomes the published world's origin.
    meta: the caller's own data for this frame (header, arrival time), handed
        back unchanged in its StreamResult.
    camera: which camera of a rig took it ("" for a single camera).
    received: when a live front end received it (seconds, any clock that only
        runs forward; None offline): a step forward in stamps that the arrival
        clock made too is not a clock jump (`stream.timeline`).
    """

    index: int
    stamp: float
    image: np.ndarray
    intrinsics: Optional[np.ndarray] = None
    c2w_external: Optional[np.ndarray] = None
    T_base_optical: Optional[np.ndarray] = None
    meta: Any = None
    camera: str = ""
    received: Optional[float] = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass
class WindowPrediction:
    """A model's answer for a window of S frames, in the window's own frame.

    c2w: (S, 4, 4) float64 camera-to-window poses. The window frame is whatever
        the model chose (DA3: its reference view); its scale is arbitrary unless
        `metric` (then metres) or the poses were given as conditioning (then the
        caller's unit).
    intrinsics: (S, 3, 3) float64 pixels at each frame's native resolution.
    depth: {window index: (H, W) float32 z-depth}, only for the decoded frames,
        in the same unit as c2w's translations.
    confidence: {window index: (H, W) float32}, same keys as depth.
    pose_confidence: (S,) float64 relative trust in each pose (1 = nominal).
    metric: True when depth and translations are in metres.
    """

    c2w: np.ndarray
    intrinsics: np.ndarray
    depth: Dict[int, np.ndarray]
    confidence: Dict[int, np.ndarray]
    pose_confidence: Optional[np.ndarray] = None
    metric: bool = False
    extras: Dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class WindowModel(Protocol):
    """What the streaming core needs from a depth-and-pose network."""

    #: human-readable description (variant, device, precision) for logs and diagnostics
    name: str
    #: True when depth and translations come out in metres
    metric: bool

    def encode(self, frame: Frame) -> Any:
        """Per-frame work that does not depend on the other frames (DA3: the
        blocks before alt_start). Returns an opaque handle; dropping it frees
        the cache."""
        ...

    def predict(
        self,
        frames: Sequence[Frame],
        handles: Sequence[Any],
        decode: Sequence[int],
        intrinsics: Optional[np.ndarray] = None,
        c2w: Optional[np.ndarray] = None,
    ) -> WindowPrediction:
        """Run the window. `decode` lists window indices whose depth is wanted
        (poses and intrinsics come for all frames). `intrinsics` (S,3,3) and
        `c2w` (S,4,4), when both given, condition the network on known
        cameras (pose-conditioned mode); the answer is then in their frame
        and unit."""
        ...
