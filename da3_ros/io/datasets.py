"""Dataset layouts with ground truth, read as offline camera streams (`open_source`
picks them) plus a `GroundTruth` for evaluation.

TUM RGB-D (a folder as downloaded, e.g. rgbd_dataset_freiburg1_xyz/):
    rgb.txt, depth.txt   "<stamp> <relative path>" lines ('#' lines: comments);
                         stamps in seconds
    rgb/*.png            colour images, 640x480
    depth/*.png          16-bit depth, 5000 units per metre, 0 = no depth
    groundtruth.txt      "<stamp> tx ty tz qx qy qz qw": the colour camera's
                         optical frame in the motion-capture world, metres
    intrinsics.json      (optional, not part of the download) {"fx","fy","cx","cy"} or {"K"}
  Each colour image gets the depth image nearest in time within `max_dt`
  (one-to-one, nearest pairs first, as the benchmark's associate.py); colour
  images without one are still streamed, and counted. Intrinsics: the
  benchmark's published calibration of the freiburg1/2/3 Kinects (chosen by
  the folder name, `rgbd_dataset_freiburg1_...`, or by option), or
  intrinsics.json. fr1 and fr2 colour images are not undistorted (their
  published distortion is small and ignored here).

7-Scenes (one sequence folder, e.g. chess/seq-01/):
    frame-000000.color.png   colour, 640x480
    frame-000000.depth.png   16-bit depth in millimetres; 0 and 65535 = no depth
    frame-000000.pose.txt    4x4 camera-to-world matrix (metres), 4 lines
  Intrinsics fx = fy = 585, cx = 320, cy = 240 (the dataset's stated values;
  intrinsics.json in the folder overrides them). The frames have no stamps:
  frame i is at i / 30 s (the Kinect's rate). The depth camera is not
  registered to the colour camera in this dataset: depth errors include that
  offset.

Plain image folder (io.sources.FolderSource): depth/<image stem>.png (16-bit
mm) or .npy (float metres), and groundtruth.txt / groundtruth.tum (TUM
trajectory, associated with the images' stamps).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .sources import ImageListSource, PathLike, SourceError, read_intrinsics_json
from .writers import read_depth_png, read_tum

log = logging.getLogger(__name__)

#: seconds within which two stamps are taken as the same moment (TUM's associate.py default)
ASSOCIATION_MAX_DT = 0.02
TUM_DEPTH_UNITS_PER_M = 5000.0
#: (fx, fy, cx, cy) of the TUM RGB-D colour cameras, 640x480 pixels, from the
#: benchmark's published calibration ("ROS default" is what its bags' CameraInfo say)
TUM_INTRINSICS: Dict[str, Tuple[float, float, float, float]] = {
    "fr1": (517.3, 516.5, 318.6, 255.3),
    "fr2": (520.9, 521.0, 325.1, 249.7),
    "fr3": (535.4, 539.2, 320.1, 247.6),
}
TUM_INTRINSICS_CHOICES = ("auto", "fr1", "fr2", "fr3", "none")
SEVEN_SCENES_INTRINSICS = (585.0, 585.0, 320.0, 240.0)
SEVEN_SCENES_FPS = 30.0
SEVEN_SCENES_INVALID_DEPTH = 65535
GT_TRAJECTORY_NAMES = ("groundtruth.txt", "groundtruth.tum")


class GroundTruthError(ValueError):
    """A ground-truth file that cannot be read."""


def K_from(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass
class GroundTruth:
    """What a layout knows about its frames, keyed like SourceFrame.index."""

    layout: str  # "tum_rgbd" | "7scenes" | "folder"
    #: per image (SourceFrame.index): its depth file, or None (none associated / missing)
    depth_files: List[Optional[Path]]
    #: PNG depth units per metre (.npy files are metres)
    depth_units_per_m: float = 1000.0
    #: PNG values meaning "no depth"
    depth_invalid: Tuple[int, ...] = (0,)
    #: ground-truth camera-to-world poses of the optical frame (metres) and
    #: their stamps (seconds); associated with answered frames by stamp
    trajectory: Optional[Tuple[np.ndarray, np.ndarray]] = None
    #: where each part came from and what was left out (for summary.json)
    info: dict = field(default_factory=dict)

    @property
    def has_depth(self) -> bool:
        return any(f is not None for f in self.depth_files)

    def depth(self, index: int) -> Optional[np.ndarray]:
        """Depth of image `index`, HxW float32 metres, NaN = none; None when the
        layout has no depth for it. Raises GroundTruthError when unreadable."""
        if index < 0 or index >= len(self.depth_files) or self.depth_files[index] is None:
            return None
        path = self.depth_files[index]
        try:
            if path.suffix.lower() == ".npy":
                d = np.load(path)
                if d.ndim != 2 or d.dtype.kind != "f":
                    raise ValueError(f"expected an HxW float array in metres, got {d.dtype} {d.shape}")
                return d.astype(np.float32, copy=False)
            return read_depth_png(path, self.depth_units_per_m, self.depth_invalid)
        except (OSError, ValueError, SyntaxError) as exc:
            raise GroundTruthError(f"{path}: {exc}") from exc

    def with_trajectory(self, path: PathLike) -> "GroundTruth":
        """The same depth, poses from a TUM trajectory file instead."""
        stamps, c2w = read_trajectory(path)
        info = dict(self.info, poses=f"{path} (TUM trajectory, associated by stamp)")
        return GroundTruth(self.layout, self.depth_files, self.depth_units_per_m, self.depth_invalid, (stamps, c2w), info)


def read_trajectory(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    try:
        return read_tum(path)
    except (OSError, ValueError) as exc:
        raise GroundTruthError(f"ground-truth trajectory {path}: {exc}") from exc


def _optional_trajectory(path: Path, info: dict) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """A layout's own TUM trajectory file, or None (noted in `info`) when absent or
    unreadable: the images and depth can still be used."""
    if not path.is_file():
        info["poses"] = f"none (no {path.name})"
        return None
    try:
        trajectory = read_trajectory(path)
    except GroundTruthError as exc:
        info["poses"] = f"unreadable: {exc}"
        log.warning("%s", info["poses"])
        return None
    info["poses"] = f"{path.name} (TUM trajectory, associated by stamp)"
    return trajectory


def associate(stamps_a: Sequence[float], stamps_b: Sequence[float], max_dt: float = ASSOCIATION_MAX_DT
              ) -> Tuple[np.ndarray, np.ndarray]:
    """One-to-one index pairs (ia, ib) with |a - b| <= max_dt, the nearest pairs
    taken first (TUM's associate.py); sorted by ia."""
    a = np.asarray(stamps_a, dtype=np.float64).reshape(-1)
    b = np.asarray(stamps_b, dtype=np.float64).reshape(-1)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(b, kind="stable")
    sb = b[order]
    lo = np.searchsorted(sb, a - max_dt, side="left")
    hi = np.searchsorted(sb, a + max_dt, side="right")
    counts = hi - lo
    ia = np.repeat(np.arange(len(a)), counts)
    pos = np.concatenate([np.arange(l, h) for l, h in zip(lo, hi)]) if counts.sum() else np.zeros(0, np.int64)
    dt = np.abs(sb[pos] - a[ia])
    used_a, used_b = np.zeros(len(a), bool), np.zeros(len(b), bool)
    out_a, out_b = [], []
    for k in np.argsort(dt, kind="stable"):
        i, j = ia[k], order[pos[k]]
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            out_a.append(i)
            out_b.append(j)
    out_a, out_b = np.asarray(out_a, np.int64), np.asarray(out_b, np.int64)
    s = np.argsort(out_a)
    return out_a[s], out_b[s]


# ---------------------------------------------------------------- TUM RGB-D


def is_tum_rgbd(path: Path) -> bool:
    return (path / "rgb.txt").is_file()


def read_file_list(path: Path) -> Tuple[np.ndarray, List[str]]:
    """A TUM list file ("<stamp> <path>" lines, '#' comments) -> (stamps, paths)."""
    stamps, names = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.replace(",", " ").split()
        if len(fields) < 2:
            raise SourceError(f"{path}:{number}: expected '<stamp> <file>', got {line!r}")
        try:
            stamps.append(float(fields[0]))
        except ValueError:
            raise SourceError(f"{path}:{number}: {fields[0]!r} is not a stamp in seconds") from None
        names.append(fields[1])
    return np.asarray(stamps, np.float64), names


def tum_camera_of(path: Path) -> Optional[str]:
    """"fr1" / "fr2" / "fr3" from a TUM sequence folder name (rgbd_dataset_freiburg2_xyz)."""
    m = re.search(r"freiburg([123])", path.resolve().name)
    return f"fr{m.group(1)}" if m else None


class TumRgbdSource(ImageListSource):
    """A TUM RGB-D sequence folder (module doc). `intrinsics`: "auto" (the
    folder's intrinsics.json, else the published calibration of the camera its
    name says), "fr1" / "fr2" / "fr3" (that calibration), "none" (estimated)."""

    kind = "tum_rgbd"

    def __init__(self, path: PathLike, max_frames: Optional[int] = None, max_dt: float = ASSOCIATION_MAX_DT,
                 intrinsics: str = "auto"):
        path = Path(path)
        if intrinsics not in TUM_INTRINSICS_CHOICES:
            raise SourceError(f"TUM intrinsics must be one of {TUM_INTRINSICS_CHOICES}, got {intrinsics!r}")
        rgb_stamps, rgb_names = read_file_list(path / "rgb.txt")
        if not rgb_names:
            raise SourceError(f"{path / 'rgb.txt'}: lists no images")
        order = np.argsort(rgb_stamps, kind="stable")
        rgb_stamps, rgb_names = rgb_stamps[order], [rgb_names[i] for i in order]
        K, k_note = self._intrinsics(path, intrinsics)
        super().__init__(path, [path / n for n in rgb_names], rgb_stamps, K, max_frames)
        info = {"layout": "TUM RGB-D", "intrinsics": k_note, "association_max_dt_s": max_dt}
        depth_files: List[Optional[Path]] = [None] * len(rgb_names)
        try:
            d_stamps, d_names = read_file_list(path / "depth.txt") if (path / "depth.txt").is_file() else (None, None)
        except (OSError, SourceError) as exc:  # the images can still be streamed
            d_stamps, info["depth"] = None, f"unreadable: {exc}"
            log.warning("%s: no ground-truth depth: %s", path, exc)
        if d_stamps is not None:
            ia, ib = associate(rgb_stamps, d_stamps, max_dt)
            missing = 0
            for i, j in zip(ia, ib):
                f = path / d_names[j]
                if f.is_file():
                    depth_files[i] = f
                else:
                    missing += 1
            info["depth"] = f"depth.txt ({TUM_DEPTH_UNITS_PER_M:g} units per metre)"
            info["depth_unassociated"] = int(len(rgb_names) - len(ia))
            info["depth_files_missing"] = missing
        elif "depth" not in info:
            info["depth"] = "none (no depth.txt)"
        trajectory = _optional_trajectory(path / "groundtruth.txt", info)
        self.ground_truth = GroundTruth("tum_rgbd", depth_files, TUM_DEPTH_UNITS_PER_M, (0,), trajectory, info)

    @staticmethod
    def _intrinsics(path: Path, choice: str) -> Tuple[Optional[np.ndarray], str]:
        if choice in TUM_INTRINSICS:
            return K_from(*TUM_INTRINSICS[choice]), f"{choice} (published calibration, chosen){_raw_note(choice)}"
        if choice == "none":
            return None, "estimated by the model (none given)"
        if (path / "intrinsics.json").is_file():
            return read_intrinsics_json(path / "intrinsics.json"), "intrinsics.json"
        camera = tum_camera_of(path)
        if camera is not None:
            return K_from(*TUM_INTRINSICS[camera]), f"{camera} (published calibration, from the folder name){_raw_note(camera)}"
        return None, "estimated by the model (folder name has no freiburg1/2/3 and no intrinsics.json)"


def _raw_note(camera: str) -> str:
    return "; its images are not undistorted, the published distortion is not applied" if camera != "fr3" else ""


# ---------------------------------------------------------------- 7-Scenes

_SEVEN_SCENES_COLOUR = re.compile(r"^frame-(\d+)\.color\.png$")


def is_seven_scenes(path: Path) -> bool:
    return any(_SEVEN_SCENES_COLOUR.match(f.name) for f in path.glob("frame-*.color.png"))


def read_pose_matrix(path: Path) -> np.ndarray:
    """A 7-Scenes pose file: a 4x4 matrix, whitespace-separated."""
    try:
        T = np.loadtxt(path, dtype=np.float64).reshape(4, 4)
    except (OSError, ValueError) as exc:
        raise GroundTruthError(f"{path}: expected a 4x4 matrix: {exc}") from exc
    if not np.all(np.isfinite(T)):
        raise GroundTruthError(f"{path}: non-finite pose")
    return T


class SevenScenesSource(ImageListSource):
    """A 7-Scenes sequence folder (module doc)."""

    kind = "7scenes"

    def __init__(self, path: PathLike, max_frames: Optional[int] = None):
        path = Path(path)
        frames = sorted((int(m.group(1)), f) for f in path.glob("frame-*.color.png")
                        if (m := _SEVEN_SCENES_COLOUR.match(f.name)))
        numbers = [n for n, _ in frames]
        stamps = [n / SEVEN_SCENES_FPS for n in numbers]
        if (path / "intrinsics.json").is_file():
            K, k_note = read_intrinsics_json(path / "intrinsics.json"), "intrinsics.json"
        else:
            K, k_note = K_from(*SEVEN_SCENES_INTRINSICS), "fx=fy=585, cx=320, cy=240 (the dataset's stated values)"
        super().__init__(path, [f for _, f in frames], stamps, K, max_frames)
        depth_files: List[Optional[Path]] = []
        pose_stamps, poses, bad_poses = [], [], []
        for (n, colour), t in zip(frames, stamps):
            stem = colour.name[: -len(".color.png")]
            d = path / f"{stem}.depth.png"
            depth_files.append(d if d.is_file() else None)
            p = path / f"{stem}.pose.txt"
            if p.is_file():
                try:
                    T = read_pose_matrix(p)
                except GroundTruthError as exc:
                    bad_poses.append(str(exc))
                    continue
                pose_stamps.append(t)
                poses.append(T)
        if bad_poses:
            log.warning("%s: %d unreadable pose files, e.g. %s", path, len(bad_poses), bad_poses[0])
        info = {"layout": "7-Scenes", "intrinsics": k_note, "stamps": f"frame number / {SEVEN_SCENES_FPS:g} s",
                "depth": "frame-*.depth.png (millimetres; 0 and 65535: none)",
                "depth_files_missing": sum(f is None for f in depth_files),
                "poses": "frame-*.pose.txt (camera-to-world)", "pose_files_missing": len(frames) - len(poses),
                "pose_files_unreadable": len(bad_poses)}
        trajectory = (np.asarray(pose_stamps, np.float64), np.asarray(poses, np.float64).reshape(-1, 4, 4)) if poses else None
        self.ground_truth = GroundTruth("7scenes", depth_files, 1000.0, (0, SEVEN_SCENES_INVALID_DEPTH), trajectory, info)


# ---------------------------------------------------------------- plain folder


def folder_ground_truth(source) -> Optional[GroundTruth]:
    """Ground truth beside a FolderSource's images (module doc), or None."""
    path = Path(source.path)
    depth_dir = path / "depth"
    depth_files: List[Optional[Path]] = [None] * len(source.files)
    info: dict = {"layout": "image folder"}
    if depth_dir.is_dir():
        for i, f in enumerate(source.files):
            for suffix in (".npy", ".png"):
                d = depth_dir / (f.stem + suffix)
                if d.is_file():
                    depth_files[i] = d
                    break
        info["depth"] = "depth/<image stem>.png (millimetres) or .npy (metres)"
        info["depth_files_missing"] = sum(d is None for d in depth_files)
    trajectory = None
    for name in GT_TRAJECTORY_NAMES:
        if (path / name).is_file():
            trajectory = _optional_trajectory(path / name, info)
            break
    if trajectory is None and not any(d is not None for d in depth_files):
        return None
    return GroundTruth("folder", depth_files, 1000.0, (0,), trajectory, info)


def describe(gt: Optional[GroundTruth]) -> str:
    """One line on what ground truth a layout has."""
    if gt is None:
        return "no ground truth"
    parts = [f"{sum(f is not None for f in gt.depth_files)} depth images" if gt.has_depth else "no depth",
             f"{len(gt.trajectory[0])} poses" if gt.trajectory is not None else "no poses"]
    return f"{gt.info.get('layout', gt.layout)}: " + ", ".join(parts)


__all__ = ["ASSOCIATION_MAX_DT", "GroundTruth", "GroundTruthError", "SevenScenesSource", "TumRgbdSource",
           "TUM_INTRINSICS", "TUM_INTRINSICS_CHOICES", "associate", "describe", "folder_ground_truth",
           "is_seven_scenes", "is_tum_rgbd", "read_file_list", "read_trajectory"]
