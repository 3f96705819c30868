"""Synthetic sequences written in the field's dataset layouts (shared by the io
and runtime tests): TUM RGB-D with its real file names, comment headers, stamps
and 5000-unit depth, and 7-Scenes with its frame-XXXXXX files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from da3_ros.geometry.transforms import c2w_to_tum

#: a real TUM RGB-D first stamp (freiburg1_xyz): epoch seconds with microseconds
TUM_T0 = 1305031102.175304


def with_stamps(seq, stamps):
    """The sequence with other stamps (the oracle finds frames by stamp)."""
    return dataclasses.replace(seq, stamps=np.asarray(stamps, np.float64))


def write_tum_rgbd(seq, root: Path, name: str = "rgbd_dataset_freiburg1_synth", depth_dt: float = 0.004,
                   drop_depth: Iterable[int] = (), missing_depth_files: Iterable[int] = (),
                   late_depth: Iterable[int] = (), corrupt_depth: Iterable[int] = (), depth_factor: float = 1.0,
                   intrinsics_json: bool = True) -> Path:
    """seq as a TUM RGB-D folder. Depth stamps trail the colour stamps by
    `depth_dt`; `drop_depth` frames have no depth.txt line, `missing_depth_files`
    a line but no file, `late_depth` a depth stamp 0.05 s late (beyond the 0.02 s
    association), `corrupt_depth` a file that is not a PNG. The depth written is
    the true depth x `depth_factor` (16-bit, 5000 per metre)."""
    d = root / name
    (d / "rgb").mkdir(parents=True, exist_ok=True)
    (d / "depth").mkdir(exist_ok=True)
    drop, missing, late, corrupt = set(drop_depth), set(missing_depth_files), set(late_depth), set(corrupt_depth)
    rgb = ["# color images", f"# file: '{name}.bag'", "# timestamp filename"]
    dep = ["# depth maps", f"# file: '{name}.bag'", "# timestamp filename"]
    for i, t in enumerate(seq.stamps):
        Image.fromarray(seq.images[i]).save(d / "rgb" / f"{t:.6f}.png")
        rgb.append(f"{t:.6f} rgb/{t:.6f}.png")
        if i in drop:
            continue
        td = t + (0.05 if i in late else depth_dt)
        dep.append(f"{td:.6f} depth/{td:.6f}.png")
        if i in missing:
            continue
        if i in corrupt:
            (d / "depth" / f"{td:.6f}.png").write_bytes(b"not a png")
            continue
        units = np.round(seq.depth[i].astype(np.float64) * depth_factor * 5000.0).clip(0, 65535).astype(np.uint16)
        Image.fromarray(units).save(d / "depth" / f"{td:.6f}.png")
    (d / "rgb.txt").write_text("\n".join(rgb) + "\n")
    (d / "depth.txt").write_text("\n".join(dep) + "\n")
    rows = c2w_to_tum(seq.c2w)
    lines = ["# ground truth trajectory", f"# file: '{name}.bag'", "# timestamp tx ty tz qx qy qz qw"]
    lines += [f"{t:.6f} " + " ".join(f"{x:.9f}" for x in r) for t, r in zip(seq.stamps, rows)]
    (d / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    if intrinsics_json:
        (d / "intrinsics.json").write_text(json.dumps({"K": seq.intrinsics.tolist()}))
    return d


def tum_depth_m(seq, i: int, depth_factor: float = 1.0) -> np.ndarray:
    """What the TUM depth PNG of frame i holds, in metres (NaN = 0 units)."""
    units = np.round(seq.depth[i].astype(np.float64) * depth_factor * 5000.0).clip(0, 65535).astype(np.uint16)
    out = units.astype(np.float32) / np.float32(5000.0)
    out[units == 0] = np.nan
    return out


def write_seven_scenes(seq, root: Path, name: str = "seq-01", drop_depth: Iterable[int] = (),
                       drop_pose: Iterable[int] = (), invalid_patch: bool = True, depth_factor: float = 1.0) -> Path:
    """seq as a 7-Scenes sequence folder (frame i at i / 30 s: give seq those
    stamps). `invalid_patch`: a corner of every depth image is 65535 (invalid)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    drop, nopose = set(drop_depth), set(drop_pose)
    for i in range(len(seq)):
        stem = f"frame-{i:06d}"
        Image.fromarray(seq.images[i]).save(d / f"{stem}.color.png")
        if i not in drop:
            mm = np.round(seq.depth[i].astype(np.float64) * depth_factor * 1000.0).clip(0, 65534).astype(np.uint16)
            if invalid_patch:
                mm[:4, :4] = 65535
            Image.fromarray(mm).save(d / f"{stem}.depth.png")
        if i not in nopose:
            np.savetxt(d / f"{stem}.pose.txt", seq.c2w[i], fmt="%.9e", delimiter="\t")
    return d


def seven_scenes_depth_m(seq, i: int, depth_factor: float = 1.0, invalid_patch: bool = True) -> np.ndarray:
    mm = np.round(seq.depth[i].astype(np.float64) * depth_factor * 1000.0).clip(0, 65534).astype(np.uint16)
    out = mm.astype(np.float32) / np.float32(1000.0)
    out[mm == 0] = np.nan
    if invalid_patch:
        out[:4, :4] = np.nan
    return out


def write_depth_npy(seq, folder: Path, depth_factor: float = 1.0) -> None:
    """depth/<stem>.npy (float metres) beside a write_sequence folder's images."""
    (folder / "depth").mkdir(exist_ok=True)
    for i in range(len(seq)):
        np.save(folder / "depth" / f"{i:06d}.npy", (seq.depth[i] * depth_factor).astype(np.float32))
