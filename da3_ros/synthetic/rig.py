"""Synthetic camera rigs: several cameras fixed on one moving body, rendered by
the project's renderer, with exact ground truth per camera.

The rig body (`base_frame`: x forward, y left, z up, REP 103) follows one of the
project's trajectories (the trajectory's camera is the body, turned by
T_BODY_OPTICAL); each camera's optical frame sits at a fixed transform from it:
the rig's extrinsics, what /tf_static carries as base_frame -> <camera>_optical_frame.
Per camera the stamps may jitter (uniform within +-jitter seconds) and a camera
may drop out for a stretch of rig frames (its views are then absent).

Views are kept flat, rig frame by rig frame in camera order, so the oracle
indexes them like a single sequence's frames.

On disk (`write_rig_sequence`): one folder per camera as `write_sequence` writes
it (an image folder run-offline reads, with that camera's ground truth), plus
    rig.json               {"name", "base_frame", "cameras": [{"name", "optical_frame",
                            "T_base_optical" 4x4 metres, "K" 3x3 pixels,
                            "frames": [the rig frame of each of its images]}]}
    base_groundtruth.txt   TUM: nominal rig-frame stamp, base_frame pose (metres)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..geometry.transforms import T_BODY_OPTICAL, c2w_to_tum, inv_se3, make_se3, tum_to_c2w
from .render import make_scene, render_batch, scene_tensors
from .sequence import FRAME_RATE_HZ, T0, SyntheticSequence, default_intrinsics, load_sequence, write_sequence
from .trajectories import TRAJECTORIES

#: camera name, yaw (degrees, about the body's z, left positive), position in the body (metres)
CameraMount = Tuple[str, float, Tuple[float, float, float]]


def _ring(yaw_deg: float, radius: float) -> Tuple[float, float, float]:
    a = np.radians(yaw_deg)
    return (radius * float(np.cos(a)), radius * float(np.sin(a)), 0.0)


#: a stereo pair (10 cm baseline, same orientation) and three cameras looking
#: left, ahead and right from a ring of 0.15 m radius (baselines 0.15 m and 0.26 m)
RIG_LAYOUTS: Dict[str, Tuple[CameraMount, ...]] = {
    "stereo": (("left", 0.0, (0.0, 0.05, 0.0)), ("right", 0.0, (0.0, -0.05, 0.0))),
    "three": (("left", 60.0, _ring(60.0, 0.15)), ("front", 0.0, _ring(0.0, 0.15)), ("right", -60.0, _ring(-60.0, 0.15))),
}


def mount_to_base_optical(yaw_deg: float, position: Sequence[float]) -> np.ndarray:
    """T_base_optical of a camera turned `yaw_deg` about the body's z (left
    positive) at `position` (metres, body frame)."""
    c, s = np.cos(np.radians(yaw_deg)), np.sin(np.radians(yaw_deg))
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return make_se3(Rz @ T_BODY_OPTICAL[:3, :3], np.asarray(position, np.float64))


@dataclass
class RigCamera:
    name: str
    #: the optical frame in the base frame (maps optical-frame points into base_frame), metres
    T_base_optical: np.ndarray
    #: (3,3) pixels
    intrinsics: np.ndarray

    @property
    def optical_frame(self) -> str:
        return f"{self.name}_optical_frame"


@dataclass
class RigSequence:
    name: str
    base_frame: str
    cameras: List[RigCamera]
    base_c2w: np.ndarray  # (N,4,4) the rig body in the synthetic world per rig frame, metres
    rig_stamps: np.ndarray  # (N,) nominal stamp of each rig frame, seconds
    # views (images actually taken), rig frame by rig frame in camera order:
    images: np.ndarray  # (V,H,W,3) uint8 RGB
    depth: np.ndarray  # (V,H,W) float32 z-depth, metres
    c2w: np.ndarray  # (V,4,4) optical frame in the synthetic world, metres
    stamps: np.ndarray  # (V,) seconds (with jitter)
    view_camera: np.ndarray  # (V,) index into cameras
    view_frame: np.ndarray  # (V,) rig frame index

    def __len__(self) -> int:
        """Rig frames."""
        return len(self.rig_stamps)

    @property
    def camera_names(self) -> List[str]:
        return [c.name for c in self.cameras]

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def extrinsics(self) -> Dict[str, np.ndarray]:
        """camera -> T_base_optical (what /tf_static says)."""
        return {c.name: c.T_base_optical.copy() for c in self.cameras}

    def camera_index(self, name: str) -> int:
        names = self.camera_names
        if name not in names:
            raise KeyError(f"no camera {name!r} in rig sequence {self.name!r} (cameras: {names})")
        return names.index(name)

    def view(self, rig_frame: int, camera: str) -> Optional[int]:
        """The view of `camera` in rig frame `rig_frame`, None if it dropped out."""
        hit = np.flatnonzero((self.view_frame == rig_frame) & (self.view_camera == self.camera_index(camera)))
        return int(hit[0]) if len(hit) else None

    def relative_extrinsics(self, a: str, b: str) -> np.ndarray:
        """T_a_b: camera b's optical frame in camera a's (metres)."""
        return inv_se3(self.cameras[self.camera_index(a)].T_base_optical) @ self.cameras[self.camera_index(b)].T_base_optical

    def arrival_order(self) -> np.ndarray:
        """View indices in the order a subscriber gets them: by stamp, then camera."""
        return np.lexsort((self.view_camera, self.stamps))

    def frame(self, view: int, index: int = 0, with_intrinsics: bool = False,
              with_extrinsics: bool = False) -> "Frame":  # noqa: F821
        """A view as a stream Frame (Frame.camera names its camera), optionally
        with CameraInfo-like intrinsics and the /tf_static extrinsics."""
        from ..stream.interface import Frame

        cam = self.cameras[self.view_camera[view]]
        return Frame(index=index, stamp=float(self.stamps[view]), image=self.images[view], camera=cam.name,
                     intrinsics=cam.intrinsics.copy() if with_intrinsics else None,
                     T_base_optical=cam.T_base_optical.copy() if with_extrinsics else None)

    def frames(self, **kw) -> Iterator["Frame"]:  # noqa: F821
        """Every view as a Frame in arrival order (Frame.index counts them); see `frame`."""
        for i, v in enumerate(self.arrival_order()):
            yield self.frame(int(v), i, **kw)

    def rig_frames(self, **kw) -> Iterator[List["Frame"]]:  # noqa: F821
        """The views of each rig frame in camera order (cameras that dropped out
        left out), as Streamer.push_rig takes them: the ground-truth grouping."""
        i = 0
        for rf in range(len(self)):
            views = np.flatnonzero(self.view_frame == rf)
            if len(views):
                yield [self.frame(int(v), i + j, **kw) for j, v in enumerate(views)]
                i += len(views)

    def camera_sequence(self, name: str) -> SyntheticSequence:
        """One camera's views as a single-camera sequence."""
        c = self.camera_index(name)
        sel = np.flatnonzero(self.view_camera == c)
        return SyntheticSequence(f"{self.name}-{name}", self.images[sel], self.depth[sel],
                                 self.cameras[c].intrinsics.copy(), self.c2w[sel], self.stamps[sel])

    # -- what the oracle asks (SyntheticSequence answers the same) ------------
    def index_of_frame(self, frame, tol: float = 1e-4) -> int:
        """The view a stream Frame shows: by its camera (Frame.camera) and stamp;
        a frame naming no camera by stamp, cameras stamped alike told apart by
        the image itself (the nearest in pixels)."""
        near = np.abs(self.stamps - float(frame.stamp)) <= tol
        if frame.camera:
            near &= self.view_camera == self.camera_index(frame.camera)
        cand = np.flatnonzero(near)
        if len(cand) == 0:
            raise KeyError(f"no view at stamp {frame.stamp:.6f} s{' of ' + frame.camera if frame.camera else ''} "
                           f"in rig sequence {self.name!r}")
        if len(cand) == 1:
            return int(cand[0])
        img = np.asarray(frame.image)
        diff = [np.abs(self.images[v].astype(np.int16) - img).mean() if self.images[v].shape == img.shape else np.inf
                for v in cand]
        return int(cand[int(np.argmin(diff))])

    def view_intrinsics(self, views: Sequence[int]) -> np.ndarray:
        """(S,3,3) intrinsics of the given views."""
        return np.stack([self.cameras[self.view_camera[v]].intrinsics for v in views]).astype(np.float64)


def make_rig_sequence(layout: Union[str, Sequence[CameraMount]] = "stereo", trajectory: str = "forward",
                      n_frames: int = 60, width: int = 96, height: int = 72, seed: int = 0, jitter: float = 0.0,
                      dropouts: Optional[Mapping[str, Tuple[int, int]]] = None, base_frame: str = "base_link",
                      intrinsics: Optional[Mapping[str, np.ndarray]] = None, device: Optional[str] = None) -> RigSequence:
    """Render a rig deterministically (same arguments, same bytes).

    layout: a name in RIG_LAYOUTS or camera mounts (name, yaw_deg, position).
    jitter: each view's stamp is the rig frame's nominal stamp plus U(-jitter,
        +jitter) seconds (so two cameras differ by at most 2 x jitter).
    dropouts: camera -> [first, stop) rig frames in which it delivers nothing.
    intrinsics: camera -> (3,3); default `default_intrinsics(width, height)`.
    device: render there (e.g. "cuda", in batches of 32; a GPU's float rounding
        may flip a few texture-boundary pixels) instead of on the CPU.
    """
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"unknown trajectory {trajectory!r}; choose from {tuple(TRAJECTORIES)}")
    mounts = RIG_LAYOUTS[layout] if isinstance(layout, str) else tuple(layout)
    if len({m[0] for m in mounts}) != len(mounts) or not mounts:
        raise ValueError("a rig needs cameras with distinct names")
    if not jitter >= 0:
        raise ValueError("jitter must be >= 0 seconds")
    K_default = default_intrinsics(width, height)
    cameras = [RigCamera(name, mount_to_base_optical(yaw, pos),
                         np.asarray((intrinsics or {}).get(name, K_default), np.float64)) for name, yaw, pos in mounts]
    s = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    base_c2w = TRAJECTORIES[trajectory](s, seed) @ inv_se3(T_BODY_OPTICAL)
    rig_stamps = T0 + np.arange(n_frames) / FRAME_RATE_HZ

    present = np.ones((n_frames, len(cameras)), bool)
    names = [c.name for c in cameras]
    for cam, (first, stop) in (dropouts or {}).items():
        present[first:stop, names.index(cam)] = False
    view_frame, view_camera = np.nonzero(present)  # row-major: rig frame by rig frame, camera order
    c2w = np.stack([base_c2w[i] @ cameras[c].T_base_optical for i, c in zip(view_frame, view_camera)]) if len(view_frame) \
        else np.zeros((0, 4, 4))
    rng = np.random.default_rng([seed, 14])
    stamps = rig_stamps[view_frame] + rng.uniform(-jitter, jitter, size=len(view_frame))

    scene = scene_tensors([make_scene(seed)], device=device or "cpu")
    images = np.empty((len(view_frame), height, width, 3), np.uint8)
    depth = np.empty((len(view_frame), height, width), np.float32)
    Ks = np.stack([cameras[c].intrinsics for c in view_camera]) if len(view_frame) else np.zeros((0, 3, 3))
    batch = 8 if device is None else 32  # small CPU batches: the renderer's memory grows with views x boxes x pixels
    for i in range(0, len(view_frame), batch):
        n = min(batch, len(view_frame) - i)
        rgb, d = render_batch({k: v.expand(n, *v.shape[1:]) for k, v in scene.items()}, torch.from_numpy(c2w[i:i + n]),
                              torch.from_numpy(Ks[i:i + n]), width, height)
        images[i:i + n], depth[i:i + n] = rgb.cpu().numpy(), d.cpu().numpy()
    name = f"{layout if isinstance(layout, str) else 'rig'}-{trajectory}"
    return RigSequence(name, base_frame, cameras, base_c2w, rig_stamps, images, depth, c2w, stamps,
                       view_camera.astype(np.int64), view_frame.astype(np.int64))


def write_rig_sequence(rig: RigSequence, out_dir: Union[str, Path], depth_png: bool = False,
                       camera_info: bool = True) -> Path:
    """Write the rig (layout in the module docstring)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta_cams = []
    for c, cam in enumerate(rig.cameras):
        write_sequence(rig.camera_sequence(cam.name), out / cam.name, depth_png=depth_png, camera_info=camera_info)
        meta_cams.append({"name": cam.name, "optical_frame": cam.optical_frame, "T_base_optical": cam.T_base_optical.tolist(),
                          "K": cam.intrinsics.tolist(), "frames": rig.view_frame[rig.view_camera == c].tolist()})
    meta = {"name": rig.name, "base_frame": rig.base_frame, "cameras": meta_cams}
    (out / "rig.json").write_text(json.dumps(meta, indent=1))
    with open(out / "base_groundtruth.txt", "w") as f:
        f.write(f"# timestamp tx ty tz qx qy qz qw ({rig.base_frame} in the synthetic world, metres)\n")
        for t, r in zip(rig.rig_stamps, c2w_to_tum(rig.base_c2w)):
            f.write(f"{t:.6f} " + " ".join(f"{x:.9f}" for x in r) + "\n")
    return out


def load_rig_sequence(rig_dir: Union[str, Path]) -> RigSequence:
    """Read a folder written by write_rig_sequence."""
    d = Path(rig_dir)
    meta = json.loads((d / "rig.json").read_text())
    gt = np.loadtxt(d / "base_groundtruth.txt", comments="#").reshape(-1, 8)
    cameras, parts = [], []
    for c, m in enumerate(meta["cameras"]):
        cameras.append(RigCamera(m["name"], np.array(m["T_base_optical"], np.float64), np.array(m["K"], np.float64)))
        seq = load_sequence(d / m["name"])
        frames = np.asarray(m["frames"], np.int64)
        if len(frames) != len(seq):
            raise ValueError(f"{d / m['name']}: {len(seq)} images but rig.json lists {len(frames)} rig frames")
        parts.append((c, frames, seq))
    key = np.concatenate([f * len(cameras) + c for c, f, _ in parts])
    order = np.argsort(key, kind="stable")

    def cat(get):
        return np.concatenate([get(p) for p in parts])[order]

    return RigSequence(meta["name"], meta["base_frame"], cameras, tum_to_c2w(gt[:, 1:]), gt[:, 0],
                       cat(lambda p: p[2].images), cat(lambda p: p[2].depth), cat(lambda p: p[2].c2w),
                       cat(lambda p: p[2].stamps), cat(lambda p: np.full(len(p[1]), p[0], np.int64)), cat(lambda p: p[1]))


def load_ground_truth(path: Union[str, Path]) -> Union[SyntheticSequence, RigSequence]:
    """A rig folder (with rig.json) or a single sequence folder."""
    p = Path(path)
    return load_rig_sequence(p) if (p / "rig.json").exists() else load_sequence(p)


def write_rig_bag(rig: RigSequence, path: Union[str, Path], namespace: str = "") -> None:
    """The rig as its drivers and a recorder write it (MCAP): /tf_static (base frame
    -> each optical frame), then per view its CameraInfo and rgb8 image under
    <namespace>/<camera>/ (`camera_info`, `image`), received a few ms after their stamps."""
    from ..io import bags

    ts = bags.get_typestore()
    prefix = namespace.rstrip("/")
    with bags.open_writer(path, storage="mcap") as w:
        tf = bags.add_topic(w, "/tf_static", "tf2_msgs/msg/TFMessage", ts, qos=[bags.latched_qos()])
        topics = {c.name: (bags.add_topic(w, f"{prefix}/{c.name}/image", bags.IMAGE, ts),
                           bags.add_topic(w, f"{prefix}/{c.name}/camera_info", bags.CAMERA_INFO, ts)) for c in rig.cameras}
        t0 = float(rig.stamps.min())
        w.write(tf, int(round(t0 * 1e9)) - 10_000_000, bags.serialize(ts, bags.tf_msg(
            ts, t0, [(rig.base_frame, c.optical_frame, c.T_base_optical) for c in rig.cameras])))
        for v in rig.arrival_order():
            c = rig.cameras[rig.view_camera[v]]
            t = float(rig.stamps[v])
            received = int(round(t * 1e9)) + 3_000_000
            image, info = topics[c.name]
            w.write(info, received - 1, bags.serialize(ts, bags.camera_info_msg(ts, c.intrinsics, rig.width, rig.height, t,
                                                                                c.optical_frame)))
            w.write(image, received, bags.serialize(ts, bags.image_msg(ts, rig.images[v], "rgb8", t, c.optical_frame)))
