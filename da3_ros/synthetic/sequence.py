"""Synthetic sequences with exact ground truth, and their on-disk form.

On disk: an image folder as `da3_ros.io.sources` reads it (the offline runner's
--input), plus ground truth beside the images:
    000000.png ...            RGB images (natural sort order)
    timestamps.txt            one stamp (seconds) per line, in image order
    intrinsics.json           {"K": 3x3} pixels; only with camera_info=True (the
                              runner then treats the intrinsics as known, like CameraInfo)
    sequence.json             {"name", "K", "width", "height"}: always (for the oracle)
    groundtruth.txt           TUM: stamp tx ty tz qx qy qz qw (optical frame, metres)
    depth.npy                 (N,H,W) float32 z-depth in metres (exact)
    depth/000000.png ...      the same as 16-bit millimetres (0 = invalid), optional
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch

from ..geometry.transforms import c2w_to_tum, tum_to_c2w
from .render import make_scene, render_batch, scene_tensors
from .trajectories import TRAJECTORIES

SEQUENCES = tuple(TRAJECTORIES)
FRAME_RATE_HZ = 30.0
#: first stamp, seconds (not zero, like a real clock)
T0 = 1000.0


@dataclass
class SyntheticSequence:
    name: str
    images: np.ndarray  # (N,H,W,3) uint8 RGB
    depth: np.ndarray  # (N,H,W) float32 z-depth, metres
    intrinsics: np.ndarray  # (3,3) pixels
    c2w: np.ndarray  # (N,4,4) optical frame to the synthetic world, metres
    stamps: np.ndarray  # (N,) seconds

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    def frames(self, with_intrinsics: bool = False, with_poses: bool = False) -> Iterator["Frame"]:  # noqa: F821
        """The sequence as stream `Frame`s (optionally with CameraInfo-like
        intrinsics and external poses)."""
        from ..stream.interface import Frame

        for i in range(len(self)):
            yield Frame(
                index=i,
                stamp=float(self.stamps[i]),
                image=self.images[i],
                intrinsics=self.intrinsics.copy() if with_intrinsics else None,
                c2w_external=self.c2w[i].copy() if with_poses else None,
            )

    def index_of_frame(self, frame, tol: float = 1e-4) -> int:
        """The ground-truth frame a stream Frame shows (by its stamp)."""
        return self.index_of_stamp(frame.stamp, tol)

    def view_intrinsics(self, indices) -> np.ndarray:
        """(S,3,3) intrinsics of the given frames (one camera: all alike)."""
        return np.repeat(self.intrinsics[None], len(indices), axis=0)

    def index_of_stamp(self, stamp: float, tol: float = 1e-4) -> int:
        i = int(np.clip(np.searchsorted(self.stamps, stamp), 1, len(self.stamps) - 1)) if len(self.stamps) > 1 else 0
        cands = [j for j in (i - 1, i) if 0 <= j < len(self.stamps)]
        j = min(cands, key=lambda k: abs(self.stamps[k] - stamp))
        if abs(self.stamps[j] - stamp) > tol:
            raise KeyError(f"no ground-truth frame at stamp {stamp:.6f} s in sequence {self.name!r}")
        return j


def default_intrinsics(width: int, height: int) -> np.ndarray:
    """About 64 degrees horizontal field of view, principal point at the centre."""
    f = 0.8 * width
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def make_sequence(name: str, n_frames: int = 200, width: int = 320, height: int = 240, seed: int = 0,
                  device: Optional[str] = None) -> SyntheticSequence:
    """Render one of SEQUENCES ("forward", "orbit", "rotation", "stop_and_go")
    deterministically (same arguments, same bytes). `device` (e.g. "cuda") renders
    the frames there in batches of 32 instead of one by one on the CPU (faster there;
    a GPU's float rounding may flip a few texture-boundary pixels)."""
    if name not in TRAJECTORIES:
        raise ValueError(f"unknown sequence {name!r}; choose from {SEQUENCES}")
    scene = make_scene(seed)
    s = np.linspace(0.0, 1.0, n_frames) if n_frames > 1 else np.zeros(1)
    c2w = TRAJECTORIES[name](s, seed)
    K = default_intrinsics(width, height)
    images = np.empty((n_frames, height, width, 3), np.uint8)
    depth = np.empty((n_frames, height, width), np.float32)
    batch = 1 if device is None else 32
    st = scene_tensors([scene], device=device or "cpu")
    for i in range(0, n_frames, batch):
        n = min(batch, n_frames - i)
        rgb, d = render_batch({k: v.expand(n, *v.shape[1:]) for k, v in st.items()}, torch.from_numpy(c2w[i:i + n]),
                              torch.from_numpy(K).expand(n, 3, 3), width, height)
        images[i:i + n], depth[i:i + n] = rgb.cpu().numpy(), d.cpu().numpy()
    stamps = T0 + np.arange(n_frames) / FRAME_RATE_HZ
    return SyntheticSequence(name, images, depth, K, c2w, stamps)


def write_sequence(seq: SyntheticSequence, out_dir: Union[str, Path], depth_png: bool = True, camera_info: bool = True) -> Path:
    """Write the sequence as an image folder with ground truth (layout above)."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(seq.images):
        Image.fromarray(img).save(out / f"{i:06d}.png")
    if depth_png:
        (out / "depth").mkdir(exist_ok=True)
        for i, d in enumerate(seq.depth):
            mm = np.where(np.isfinite(d) & (d > 0), np.round(d * 1000.0), 0).clip(0, 65535).astype(np.uint16)
            Image.fromarray(mm).save(out / "depth" / f"{i:06d}.png")
    np.save(out / "depth.npy", seq.depth)
    (out / "timestamps.txt").write_text("".join(f"{t:.6f}\n" for t in seq.stamps))
    rows = c2w_to_tum(seq.c2w)
    with open(out / "groundtruth.txt", "w") as f:
        f.write("# timestamp tx ty tz qx qy qz qw (optical frame, metres)\n")
        for t, r in zip(seq.stamps, rows):
            f.write(f"{t:.6f} " + " ".join(f"{x:.9f}" for x in r) + "\n")
    meta = {"name": seq.name, "K": seq.intrinsics.tolist(), "width": seq.width, "height": seq.height}
    (out / "sequence.json").write_text(json.dumps(meta, indent=1))
    if camera_info:
        (out / "intrinsics.json").write_text(json.dumps({"K": seq.intrinsics.tolist()}, indent=1))
    return out


def load_sequence(seq_dir: Union[str, Path]) -> SyntheticSequence:
    """Read a folder written by write_sequence (exact depth from depth.npy)."""
    from PIL import Image

    d = Path(seq_dir)
    meta = json.loads((d / "sequence.json").read_text())
    files = sorted(d.glob("[0-9]*.png"))
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    stamps = np.array([float(x) for x in (d / "timestamps.txt").read_text().split()])
    gt = np.loadtxt(d / "groundtruth.txt", comments="#").reshape(-1, 8)
    depth = np.load(d / "depth.npy")
    return SyntheticSequence(meta.get("name", d.name), images, depth, np.array(meta["K"], dtype=np.float64), tum_to_c2w(gt[:, 1:]), stamps)
