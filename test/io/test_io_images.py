"""da3_ros.io.images: ROS image buffers <-> arrays."""

import array
import io

import numpy as np
import pytest
from PIL import Image

from da3_ros.io.images import (
    SUPPORTED_ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_depth,
    decode_image,
    encode_compressed,
    encode_image,
)

H, W = 5, 7
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
LOW = RNG.integers(0, 256, (H, W, 4), dtype=np.uint16)  # low bytes that >> 8 must drop

# encoding -> (buffer channels from RGB, sample bytes)
LAYOUT = {
    "rgb8": ([0, 1, 2], 1), "bgr8": ([2, 1, 0], 1), "rgba8": ([0, 1, 2, None], 1), "bgra8": ([2, 1, 0, None], 1),
    "mono8": ([0], 1),
    "rgb16": ([0, 1, 2], 2), "bgr16": ([2, 1, 0], 2), "rgba16": ([0, 1, 2, None], 2), "bgra16": ([2, 1, 0, None], 2),
    "mono16": ([0], 2),
}


def make_buffer(encoding, pad=0, bigendian=False):
    """Pack RGB the way a ROS driver would, independently of the decoder; returns (step, bytes, expected rgb)."""
    order, nbytes = LAYOUT[encoding]
    planes = [RGB[:, :, c] if c is not None else np.full((H, W), 200, np.uint8) for c in order]
    pixels = np.stack(planes, axis=2).astype(np.uint16)
    if nbytes == 2:
        pixels = (pixels << 8) | LOW[:, :, : len(order)]
        pixels = pixels.astype(">u2" if bigendian else "<u2")
    else:
        pixels = pixels.astype(np.uint8)
    row = pixels.reshape(H, -1).view(np.uint8).reshape(H, -1)
    step = row.shape[1] + pad
    buf = np.full((H, step), 0xAB, np.uint8)  # padding bytes that must not leak into the image
    buf[:, : row.shape[1]] = row
    expected = np.repeat(RGB[:, :, :1], 3, axis=2) if encoding.startswith("mono") else RGB
    return step, buf.tobytes(), expected


def test_layout_table_covers_every_supported_encoding():
    assert set(LAYOUT) == set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", sorted(LAYOUT))
@pytest.mark.parametrize("pad", [0, 3])
def test_decode_round_trip(encoding, pad):
    step, data, expected = make_buffer(encoding, pad=pad)
    out = decode_image(encoding, H, W, step, data)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["rgb16", "bgr16", "rgba16", "bgra16", "mono16"])
@pytest.mark.parametrize("pad", [0, 1])  # pad 1: odd step, 16-bit samples not 2-byte aligned
def test_decode_big_endian_16bit(encoding, pad):
    step, data, expected = make_buffer(encoding, pad=pad, bigendian=True)
    np.testing.assert_array_equal(decode_image(encoding, H, W, step, data, is_bigendian=1), expected)
    # read with the wrong byte order the low bytes show up instead: the flag matters
    assert not np.array_equal(decode_image(encoding, H, W, step, data, is_bigendian=0), expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_8bit_decode_is_zero_copy_view(encoding):
    step, data, expected = make_buffer(encoding, pad=2)
    buf = np.frombuffer(bytearray(data), dtype=np.uint8)
    out = decode_image(encoding, H, W, step, buf)
    assert np.shares_memory(out, buf)
    copied = decode_image(encoding, H, W, step, buf, copy=True)
    assert not np.shares_memory(copied, buf)
    np.testing.assert_array_equal(copied, expected)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, "ndarray", "array", list])
def test_decode_accepts_all_buffer_types(kind):
    step, data, expected = make_buffer("bgr8")
    if kind == "ndarray":
        buf = np.frombuffer(data, np.uint8).copy()
    elif kind == "array":  # what rclpy puts in a uint8[] field
        buf = array.array("B", data)
    else:
        buf = kind(data)
    np.testing.assert_array_equal(decode_image("bgr8", H, W, step, buf), expected)


def test_decode_tolerates_trailing_bytes():
    step, data, expected = make_buffer("rgb8")
    np.testing.assert_array_equal(decode_image("rgb8", H, W, step, data + b"\0" * 10), expected)


def test_unknown_encoding_lists_supported():
    with pytest.raises(ImageDecodeError, match=r"unsupported image encoding 'yuv422'.*rgb8.*mono16"):
        decode_image("yuv422", H, W, W * 2, bytes(H * W * 2))


def test_depth_encoding_in_decode_image_points_to_decode_depth():
    with pytest.raises(ImageDecodeError, match="decode_depth"):
        decode_image("32FC1", H, W, W * 4, bytes(H * W * 4))


@pytest.mark.parametrize("height,width", [(0, W), (H, 0)])
def test_zero_size(height, width):
    with pytest.raises(ImageDecodeError, match="zero size"):
        decode_image("rgb8", height, width, width * 3, b"")


def test_step_smaller_than_row():
    with pytest.raises(ImageDecodeError, match=r"step 20 is smaller than width 7 x 3 bytes per pixel = 21"):
        decode_image("rgb8", H, W, 20, bytes(20 * H))


def test_step_smaller_than_row_16bit():
    with pytest.raises(ImageDecodeError, match=r"x 6 bytes per pixel = 42"):
        decode_image("rgb16", H, W, W * 3, bytes(W * 3 * H))


def test_truncated_data():
    step, data, _ = make_buffer("rgb8", pad=1)
    with pytest.raises(ImageDecodeError, match=rf"truncated: {len(data) - 1} bytes, expected step {step} x height {H}"):
        decode_image("rgb8", H, W, step, data[:-1])


# ---------------------------------------------------------------- depth


def test_decode_depth_16uc1_mm_to_metres_with_nan_for_zero():
    mm = np.array([[0, 1, 1500], [65535, 250, 0]], dtype="<u2")
    depth = decode_depth("16UC1", 2, 3, 6, mm.tobytes())
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth[~np.isnan(depth)], [0.001, 1.5, 65.535, 0.25], rtol=1e-6)
    assert np.isnan(depth[0, 0]) and np.isnan(depth[1, 2])


def test_decode_depth_32fc1_big_endian_and_padding():
    values = np.array([[1.25, np.nan], [3.5, 0.0]], dtype=">f4")
    buf = np.zeros((2, 12), np.uint8)
    buf[:, :8] = values.view(np.uint8).reshape(2, 8)
    depth = decode_depth("32FC1", 2, 2, 12, buf.tobytes(), is_bigendian=1)
    np.testing.assert_array_equal(depth, values.astype(np.float32))


def test_decode_depth_rejects_colour_encoding():
    with pytest.raises(ImageDecodeError, match="unsupported depth encoding 'rgb8'.*32FC1, 16UC1"):
        decode_depth("rgb8", H, W, W * 3, bytes(H * W * 3))


# ---------------------------------------------------------------- encode


def test_encode_rgb8_and_mono8_round_trip():
    step, data = encode_image(RGB, "rgb8")
    assert step == W * 3 and len(data) == step * H
    np.testing.assert_array_equal(decode_image("rgb8", H, W, step, data), RGB)
    grey = RGB[:, :, 1].copy()
    step, data = encode_image(grey, "mono8")
    assert step == W
    np.testing.assert_array_equal(decode_image("mono8", H, W, step, data)[:, :, 2], grey)


def test_encode_non_contiguous_rgb8():
    view = RGB[:, ::-1]  # negative stride
    step, data = encode_image(view, "rgb8")
    np.testing.assert_array_equal(decode_image("rgb8", H, W, step, data), view)


def test_encode_32fc1_round_trip_little_endian():
    depth = RNG.uniform(0.1, 80.0, (H, W))  # float64 in, float32 out
    depth[0, 0] = np.nan
    step, data = encode_image(depth, "32FC1")
    assert step == W * 4
    np.testing.assert_array_equal(np.frombuffer(data, "<f4").reshape(H, W), depth.astype(np.float32))
    np.testing.assert_array_equal(decode_depth("32FC1", H, W, step, data), depth.astype(np.float32))


def test_encode_16uc1_round_trip():
    mm = np.array([[0, 1000], [65535, 42]], dtype=np.int64)
    step, data = encode_image(mm, "16UC1")
    assert step == 4
    np.testing.assert_array_equal(np.frombuffer(data, "<u2").reshape(2, 2), mm)
    np.testing.assert_allclose(decode_depth("16UC1", 2, 2, step, data), [[np.nan, 1.0], [65.535, 0.042]], rtol=1e-6)


@pytest.mark.parametrize(
    "array,encoding,message",
    [
        (RGB.astype(np.float32), "rgb8", "needs uint8"),
        (RGB[:, :, 0], "rgb8", "HxWx3"),
        (RGB, "mono8", "HxW"),
        (np.zeros((2, 2), np.int32), "32FC1", "float"),
        (np.zeros((2, 2), np.float32), "16UC1", "integer"),
        (np.full((2, 2), 70000), "16UC1", r"\[0, 65535\]"),
        (RGB, "yuv422", "cannot encode 'yuv422'"),
    ],
)
def test_encode_errors(array, encoding, message):
    with pytest.raises(ValueError, match=message):
        encode_image(array, encoding)


# ---------------------------------------------------------------- compressed


def smooth_rgb(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=2).astype(np.uint8)


def test_png_round_trip_is_exact():
    img = smooth_rgb()
    np.testing.assert_array_equal(decode_compressed("png", encode_compressed(img, "png")), img)


def test_jpeg_round_trip_is_close():
    img = smooth_rgb()
    data = encode_compressed(img, "jpeg", quality=95)
    assert data[:2] == b"\xff\xd8"
    out = decode_compressed("rgb8; jpeg compressed bgr8", data)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 2.0


def test_jpeg_quality_changes_size():
    img = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    assert len(encode_compressed(img, "jpeg", quality=30)) < len(encode_compressed(img, "jpeg", quality=95))


def _pil_bytes(array, mode=None, fmt="PNG"):
    out = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(out, format=fmt)
    return out.getvalue()


def test_compressed_grey_rgba_and_16bit_become_rgb():
    grey = smooth_rgb()[:, :, 0].copy()
    np.testing.assert_array_equal(decode_compressed("png", _pil_bytes(grey)), np.repeat(grey[:, :, None], 3, 2))

    rgba = np.concatenate([smooth_rgb(), np.full((48, 64, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(decode_compressed("png", _pil_bytes(rgba)), rgba[:, :, :3])

    grey16 = (grey.astype(np.uint16) << 8) | 0x7F
    out = decode_compressed("png", _pil_bytes(grey16))
    np.testing.assert_array_equal(out[:, :, 0], grey)  # scaled by >> 8, not clipped


def test_corrupt_jpeg_raises_with_reason():
    data = bytearray(encode_compressed(smooth_rgb(), "jpeg"))
    with pytest.raises(ImageDecodeError, match=r"cannot decode compressed image \('jpeg', 100 bytes\)"):
        decode_compressed("jpeg", bytes(data[:100]))  # truncated
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        decode_compressed("jpeg", b"not an image at all")


def test_empty_and_compressed_depth_rejected():
    with pytest.raises(ImageDecodeError, match="no data"):
        decode_compressed("jpeg", b"")
    with pytest.raises(ImageDecodeError, match="compressedDepth"):
        decode_compressed("16UC1; compressedDepth png", b"\0" * 20)


def test_encode_compressed_errors():
    with pytest.raises(ValueError, match="unsupported compressed format 'webp'"):
        encode_compressed(smooth_rgb(), "webp")
    with pytest.raises(ValueError, match="uint8"):
        encode_compressed(smooth_rgb().astype(np.float32), "png")
