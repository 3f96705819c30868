"""da3_ros.io.writers: PLY, TUM, depth PNG, JSON."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from da3_ros.io.writers import (
    read_depth_png_mm,
    read_ply,
    read_tum,
    write_depth_png_mm,
    write_json,
    write_ply,
    write_tum,
)

RNG = np.random.default_rng(1)


# ---------------------------------------------------------------- PLY


def test_ply_round_trip_with_colour(tmp_path):
    xyz = RNG.normal(size=(100, 3))
    rgb = RNG.integers(0, 256, (100, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "cloud.ply"
    write_ply(path, xyz, rgb)
    raw = path.read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    assert b"format binary_little_endian 1.0" in header and b"element vertex 100" in header
    assert b"property float x" in header and b"property uchar red" in header
    assert len(body) == 100 * (3 * 4 + 3)  # float32 xyz + uchar rgb, no padding
    np.testing.assert_array_equal(np.frombuffer(body[:4], "<f4")[0], np.float32(xyz[0, 0]))
    xyz2, rgb2 = read_ply(path)
    np.testing.assert_array_equal(xyz2, xyz.astype(np.float32))
    np.testing.assert_array_equal(rgb2, rgb)


def test_ply_round_trip_without_colour_and_empty(tmp_path):
    xyz = RNG.normal(size=(5, 3)).astype(np.float32)
    write_ply(tmp_path / "a.ply", xyz)
    xyz2, rgb2 = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(xyz2, xyz)
    assert rgb2 is None
    write_ply(tmp_path / "empty.ply", np.zeros((0, 3)))
    assert read_ply(tmp_path / "empty.ply")[0].shape == (0, 3)


def test_ply_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "x.ply", np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        write_ply(tmp_path / "x.ply", np.zeros((4, 3)), np.zeros((4, 3)))
    (tmp_path / "ascii.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 0\nend_header\n")
    with pytest.raises(ValueError, match="ascii"):
        read_ply(tmp_path / "ascii.ply")


def test_ply_truncated_body(tmp_path):
    write_ply(tmp_path / "c.ply", np.ones((10, 3)))
    path = tmp_path / "c.ply"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated: 9 of 10"):
        read_ply(path)


# ---------------------------------------------------------------- TUM


def rot_z(deg):
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])


def rot_x(deg):
    a = math.radians(deg)
    return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])


def test_tum_known_rotation_quaternion_order(tmp_path):
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[0, :3, :3] = rot_z(90)  # q = (0, 0, sin45, cos45) in TUM's x y z w order
    c2w[0, :3, 3] = [1.0, 2.0, 3.0]
    c2w[1, :3, :3] = rot_x(60)  # q = (sin30, 0, 0, cos30)
    c2w[2, :3, :3] = rot_z(-170)  # q = (0, 0, sin(-85), cos(-85)): negative qz, positive qw
    path = tmp_path / "traj.txt"
    write_tum(path, [10.0, 10.5, 11.0], c2w)
    rows = [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]
    values = np.array(rows, dtype=float)
    s = math.sqrt(0.5)
    np.testing.assert_allclose(values[0], [10.0, 1, 2, 3, 0, 0, s, s], atol=1e-9)
    np.testing.assert_allclose(values[1], [10.5, 0, 0, 0, 0.5, 0, 0, math.cos(math.radians(30))], atol=1e-9)
    a = math.radians(-170) / 2
    np.testing.assert_allclose(values[2, 4:], [0, 0, math.sin(a), math.cos(a)], atol=1e-9)


def test_tum_quaternions_are_written_with_qw_non_negative(tmp_path):
    from scipy.spatial.transform import Rotation

    c2w = np.tile(np.eye(4), (200, 1, 1))
    c2w[:, :3, :3] = Rotation.random(200, random_state=0).as_matrix()  # scipy gives qw < 0 for ~40% of these
    write_tum(tmp_path / "t.txt", np.arange(200.0), c2w)
    values = np.loadtxt(tmp_path / "t.txt")
    assert np.all(values[:, 7] >= 0)
    np.testing.assert_allclose(np.linalg.norm(values[:, 4:], axis=1), 1.0, atol=1e-8)


def test_tum_round_trip_random_poses(tmp_path):
    from scipy.spatial.transform import Rotation

    n = 20
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=3).as_matrix()
    c2w[:, :3, 3] = RNG.normal(scale=5, size=(n, 3))
    stamps = 1.7e9 + np.arange(n) * 0.033
    write_tum(tmp_path / "t.txt", stamps, c2w)
    stamps2, c2w2 = read_tum(tmp_path / "t.txt")
    np.testing.assert_allclose(stamps2, stamps, atol=1e-6)
    np.testing.assert_allclose(c2w2, c2w, atol=1e-7)


def test_tum_shape_errors_and_bad_lines(tmp_path):
    with pytest.raises(ValueError, match="c2w"):
        write_tum(tmp_path / "t.txt", [0.0, 1.0], np.tile(np.eye(4), (3, 1, 1)))
    (tmp_path / "bad.txt").write_text("# c\n0 1 2 3 0 0 0\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected 8 values"):
        read_tum(tmp_path / "bad.txt")


# ---------------------------------------------------------------- depth PNG


def test_depth_png_round_trip_and_invalid_values(tmp_path):
    depth = np.array([[0.5, 1.2345, np.nan], [-1.0, np.inf, 70.0], [0.0, 65.535, 0.0004]])
    path = tmp_path / "d" / "depth.png"
    write_depth_png_mm(path, depth)
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")
        mm = np.asarray(img)
    np.testing.assert_array_equal(mm, [[500, 1234, 0], [0, 0, 65535], [0, 65535, 0]])  # 1.2345 m -> round half even
    back = read_depth_png_mm(path)
    assert back.dtype == np.float32
    expected = np.array([[0.5, 1.234, np.nan], [np.nan, np.nan, 65.535], [np.nan, 65.535, np.nan]], np.float32)
    np.testing.assert_array_equal(back, expected)


def test_depth_png_precision_is_half_a_millimetre(tmp_path):
    depth = RNG.uniform(0.1, 60.0, (32, 40)).astype(np.float32)
    write_depth_png_mm(tmp_path / "d.png", depth)
    assert np.max(np.abs(read_depth_png_mm(tmp_path / "d.png") - depth)) <= 0.0005 + 1e-6


# ---------------------------------------------------------------- JSON


def test_write_json_numpy_aware_and_strict(tmp_path):
    obj = {
        "K": np.eye(3),
        "n": np.int64(7),
        "f": np.float32(0.5),
        "bad": [float("nan"), np.float64(np.inf)],
        "path": Path("/a/b"),
        "tuple": (1, 2),
        3: "int key",
    }
    path = tmp_path / "out" / "x.json"
    write_json(path, obj)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)
    assert back == {
        "K": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "n": 7,
        "f": 0.5,
        "bad": [None, None],
        "path": "/a/b",
        "tuple": [1, 2],
        "3": "int key",
    }
    assert not list(path.parent.glob("*.tmp"))
