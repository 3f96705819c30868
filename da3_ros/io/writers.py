"""Output files of the offline tools: point clouds, trajectories, depth maps, JSON.

  * PLY: binary little-endian, float32 x y z, optional uchar red green blue.
  * TUM trajectory: one line per pose, `timestamp tx ty tz qx qy qz qw`
    (seconds, metres or the map's unit, unit quaternion with scalar LAST),
    camera-to-world as in the TUM RGB-D benchmark.
  * depth PNG: 16-bit greyscale, millimetres, 0 = no depth (TUM/ScanNet style).
  * JSON: numpy-aware, strict (non-finite floats written as null).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]

# ---------------------------------------------------------------- PLY

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def write_ply(path: PathLike, xyz: np.ndarray, rgb: Optional[np.ndarray] = None) -> None:
    """Write a point cloud as binary little-endian PLY.

    xyz: (N, 3) float, stored as float32. rgb: (N, 3) uint8 or None.
    """
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"xyz must be (N, 3), got {xyz.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != xyz.shape or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (N, 3) uint8 matching xyz {xyz.shape}, got {rgb.shape} {rgb.dtype}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(xyz), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]

    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(xyz)}"]
    header += [f"property {'float' if t == '<f4' else 'uchar'} {name}" for name, t in fields]
    header += ["end_header"]
    _ensure_parent(path)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(vertices.tobytes())


def read_ply(path: PathLike) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Read a binary little-endian PLY vertex element -> (xyz (N,3) float32, rgb (N,3) uint8 or None).

    Reads files whose only (or first) element is `vertex` with scalar
    properties, which covers ours and most point-cloud exporters.
    """
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path}: not a PLY file")
        count, fields, element = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: PLY header has no end_header")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format" and words[1] != "binary_little_endian":
                raise ValueError(f"{path}: PLY format {words[1]!r} not supported (binary_little_endian only)")
            elif words[0] == "element":
                element = words[1]
                if count is None:
                    # the body stores elements in header order: vertices must come first
                    if element != "vertex":
                        raise ValueError(f"{path}: first PLY element is {element!r}, expected 'vertex'")
                    count = int(words[2])
            elif words[0] == "property" and element == "vertex":
                if words[1] == "list":
                    raise ValueError(f"{path}: list property in vertex element not supported")
                if words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unknown PLY property type {words[1]!r}")
                fields.append((words[2], "<" + _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        vertices = np.fromfile(f, dtype=fields, count=count or 0)
    if len(vertices) != (count or 0):
        raise ValueError(f"{path}: PLY body truncated: {len(vertices)} of {count} vertices")
    names = vertices.dtype.names or ()
    if not all(c in names for c in ("x", "y", "z")):
        raise ValueError(f"{path}: vertex element has no x, y, z properties (has {list(names)})")
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1).astype(np.float32)
    rgb = None
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1).astype(np.uint8)
    return xyz, rgb


# ---------------------------------------------------------------- TUM trajectories


def write_tum(path: PathLike, stamps: np.ndarray, c2w: np.ndarray) -> None:
    """Write camera-to-world poses as a TUM trajectory.

    stamps: (N,) seconds. c2w: (N, 4, 4); the rotation block is converted with
    scipy (nearest rotation if not exactly orthonormal), sign fixed to qw >= 0.
    """
    from scipy.spatial.transform import Rotation

    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1)
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4) or len(c2w) != len(stamps):
        raise ValueError(f"need stamps (N,) and c2w (N,4,4), got {stamps.shape} and {c2w.shape}")
    quat = Rotation.from_matrix(c2w[:, :3, :3]).as_quat() if len(c2w) else np.zeros((0, 4))  # x, y, z, w
    quat[quat[:, 3] < 0] *= -1.0  # q and -q are the same rotation; pick one for stable files
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for t, pose, q in zip(stamps, c2w, quat):
        values = list(pose[:3, 3]) + list(q)
        lines.append(f"{t:.9f} " + " ".join(f"{v:.9g}" for v in values))
    _ensure_parent(path)
    Path(path).write_text("\n".join(lines) + "\n")


def read_tum(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory -> (stamps (N,) float64 seconds, c2w (N,4,4) float64).

    Blank lines and lines starting with '#' are skipped.
    """
    from scipy.spatial.transform import Rotation

    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        values = line.replace(",", " ").split()
        if len(values) != 8:
            raise ValueError(f"{path}:{number}: expected 8 values 't tx ty tz qx qy qz qw', got {len(values)}")
        rows.append([float(v) for v in values])
    data = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    c2w = np.tile(np.eye(4), (len(data), 1, 1))
    if len(data):
        c2w[:, :3, :3] = Rotation.from_quat(data[:, 4:8]).as_matrix()  # scalar-last, like TUM
        c2w[:, :3, 3] = data[:, 1:4]
    return data[:, 0].copy(), c2w


# ---------------------------------------------------------------- depth PNG

DEPTH_PNG_MAX_M = 65.535  # largest depth a uint16 millimetre PNG can hold


def write_depth_png_mm(path: PathLike, depth_m: np.ndarray) -> None:
    """Write HxW depth in metres as a 16-bit PNG in millimetres.

    NaN, inf and depth <= 0 become 0 (= no depth); depth beyond 65.535 m is
    clipped to 65535 mm. Depth under 0.5 mm rounds to 0 and reads back as invalid.
    """
    from PIL import Image

    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW, got {depth.shape}")
    valid = np.isfinite(depth) & (depth > 0)
    mm = np.zeros(depth.shape, dtype=np.uint16)
    mm[valid] = np.round(np.minimum(depth[valid], DEPTH_PNG_MAX_M) * 1000.0).astype(np.uint16)
    _ensure_parent(path)
    Image.fromarray(mm).save(path, format="PNG")


def read_depth_png_mm(path: PathLike) -> np.ndarray:
    """Read a 16-bit millimetre depth PNG -> HxW float32 metres, NaN where 0."""
    return read_depth_png(path, 1000.0)


def read_depth_png(path: PathLike, units_per_metre: float, invalid: Tuple[int, ...] = (0,)) -> np.ndarray:
    """Read a 16-bit depth PNG in `units_per_metre` (1000: millimetres, TUM
    RGB-D: 5000) -> HxW float32 metres, NaN where the value is in `invalid`
    (0 = no depth; 7-Scenes also marks 65535)."""
    from PIL import Image

    with Image.open(path) as img:
        raw = np.asarray(img)
    if raw.ndim != 2 or raw.dtype.kind not in "iu":
        raise ValueError(f"{path}: depth PNG must be single-channel integer (16-bit), got {raw.dtype} {raw.shape}")
    depth = raw.astype(np.float32) / np.float32(units_per_metre)
    depth[np.isin(raw, invalid)] = np.nan
    return depth


# ---------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """numpy arrays/scalars, paths, tuples and sets -> plain JSON types; non-finite floats -> None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Write `obj` as strict JSON (see to_jsonable), atomically (tmp file + rename)."""
    _ensure_parent(path)
    tmp = Path(f"{os.fspath(path)}.tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n")
    os.replace(tmp, path)


def _ensure_parent(path: PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
