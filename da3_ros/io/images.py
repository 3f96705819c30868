"""ROS image buffers <-> NumPy arrays, without cv_bridge.

Pure NumPy (plus Pillow for JPEG/PNG). The ROS node wraps these around
sensor_msgs/Image and sensor_msgs/CompressedImage; the offline tools use them on
messages read from bags with `rosbags`.

Conventions:
  * decoded colour images are HxWx3 uint8 RGB;
  * 8-bit decodes are zero-copy views of the message buffer where the layout
    allows (rgb8, bgr8, rgba8, bgra8, mono8). Such a view may be read-only,
    non-contiguous or have a negative channel stride (bgr): call
    `np.ascontiguousarray` before handing it to torch or writing into it, or
    pass `copy=True`;
  * 16-bit colour/mono images are scaled to 8 bit by `>> 8` (keeps the top byte);
  * depth is float32 metres, NaN where invalid.
"""

from __future__ import annotations

import io
from typing import Dict, NamedTuple, Sequence, Tuple, Union

import numpy as np

# bytes-like: bytes, bytearray, memoryview, array.array('B') (rclpy's uint8[]), np.ndarray, list of ints
Buffer = Union[bytes, bytearray, memoryview, np.ndarray, Sequence[int]]


class ImageDecodeError(ValueError):
    """A message buffer that cannot be turned into an image."""


class _Layout(NamedTuple):
    channels: int  # samples per pixel in the buffer
    sample_bytes: int  # 1 or 2
    rgb_index: Tuple[int, ...]  # buffer channels that give R, G, B (mono: (0,))


# sensor_msgs/image_encodings.hpp names we can turn into RGB
_LAYOUTS: Dict[str, _Layout] = {
    "rgb8": _Layout(3, 1, (0, 1, 2)),
    "bgr8": _Layout(3, 1, (2, 1, 0)),
    "rgba8": _Layout(4, 1, (0, 1, 2)),
    "bgra8": _Layout(4, 1, (2, 1, 0)),
    "mono8": _Layout(1, 1, (0,)),
    "rgb16": _Layout(3, 2, (0, 1, 2)),
    "bgr16": _Layout(3, 2, (2, 1, 0)),
    "rgba16": _Layout(4, 2, (0, 1, 2)),
    "bgra16": _Layout(4, 2, (2, 1, 0)),
    "mono16": _Layout(1, 2, (0,)),
}

SUPPORTED_ENCODINGS: Tuple[str, ...] = tuple(_LAYOUTS)
DEPTH_ENCODINGS: Tuple[str, ...] = ("32FC1", "16UC1")
ENCODE_ENCODINGS: Tuple[str, ...] = ("rgb8", "mono8", "32FC1", "16UC1")


# ---------------------------------------------------------------- raw buffers


def _as_bytes_array(data: Buffer) -> np.ndarray:
    """Flat uint8 view of any buffer (no copy for contiguous input)."""
    if isinstance(data, np.ndarray):
        flat = np.ascontiguousarray(data).reshape(-1)
        return flat.view(np.uint8)
    if isinstance(data, (list, tuple)):  # a uint8[] field handed over as a Python list (copy)
        return np.asarray(data, dtype=np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError as exc:
        raise ImageDecodeError(f"image data of type {type(data).__name__} is not a byte buffer") from exc


def _pixel_rows(
    what: str, height: int, width: int, step: int, data: Buffer, pixel_bytes: int
) -> np.ndarray:
    """(height, width * pixel_bytes) uint8 view of the pixel bytes, step padding dropped.

    Why strict: a buffer shorter than step * height means a truncated or
    mis-described message; guessing would silently shift rows.
    Extra trailing bytes are tolerated (some drivers over-allocate).
    """
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"{what}: image has zero size ({width}x{height}); width and height must be > 0")
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageDecodeError(
            f"{what}: step {step} is smaller than width {width} x {pixel_bytes} bytes per pixel = {row_bytes}"
        )
    buf = _as_bytes_array(data)
    needed = step * height
    if buf.size < needed:
        raise ImageDecodeError(
            f"{what}: data is truncated: {buf.size} bytes, expected step {step} x height {height} = {needed}"
        )
    return buf[:needed].reshape(height, step)[:, :row_bytes]


def _samples(rows: np.ndarray, sample_bytes: int, is_bigendian: int) -> np.ndarray:
    """Reinterpret rows of bytes as 8- or 16-bit samples (view, no copy)."""
    if sample_bytes == 1:
        return rows
    # the last axis is contiguous, so a dtype view is legal even with step padding
    return rows.view(np.dtype(">u2" if is_bigendian else "<u2"))


# ---------------------------------------------------------------- decoding


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Buffer,
    is_bigendian: int = 0,
    copy: bool = False,
) -> np.ndarray:
    """Decode a sensor_msgs/Image buffer to HxWx3 uint8 RGB.

    8-bit encodings return a view of `data` (see module notes) unless `copy`.
    16-bit encodings are scaled to 8 bit by >> 8 and honour `is_bigendian`.
    Raises ImageDecodeError for unsupported encodings, zero size, a step
    smaller than one row of pixels, or truncated data.
    """
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageDecodeError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
            + (" (depth images: use decode_depth)" if encoding in DEPTH_ENCODINGS else "")
        )
    pixel_bytes = layout.channels * layout.sample_bytes
    rows = _pixel_rows(encoding, int(height), int(width), int(step), data, pixel_bytes)
    pixels = _samples(rows, layout.sample_bytes, is_bigendian).reshape(int(height), int(width), layout.channels)

    if layout.rgb_index == (0,):
        # mono: broadcast the single channel (a stride-0 view, not three copies)
        rgb = np.broadcast_to(pixels, (int(height), int(width), 3))
    elif layout.rgb_index == (0, 1, 2):
        rgb = pixels[:, :, :3]
    else:  # (2, 1, 0): reversed channel slice is still a view
        rgb = pixels[:, :, 2::-1]

    if layout.sample_bytes == 2:
        return (rgb >> 8).astype(np.uint8)
    return np.array(rgb, copy=True) if copy else rgb


def decode_depth(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: Buffer,
    is_bigendian: int = 0,
) -> np.ndarray:
    """Decode a depth image to HxW float32 metres (always a copy).

    32FC1: values as published (metres, REP 118: NaN/inf kept as they are).
    16UC1: millimetres -> metres, 0 (no measurement) -> NaN.
    """
    if encoding == "32FC1":
        dtype = np.dtype(">f4" if is_bigendian else "<f4")
    elif encoding == "16UC1":
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
    else:
        raise ImageDecodeError(f"unsupported depth encoding {encoding!r}; supported: {', '.join(DEPTH_ENCODINGS)}")
    rows = _pixel_rows(encoding, int(height), int(width), int(step), data, dtype.itemsize)
    values = rows.view(dtype)
    if encoding == "32FC1":
        return values.astype(np.float32)
    depth = values.astype(np.float32) / np.float32(1000.0)
    depth[values == 0] = np.nan
    return depth


def decode_compressed(format: str, data: Buffer) -> np.ndarray:  # noqa: A002 - the ROS field name
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to HxWx3 uint8 RGB.

    `format` is the message's format string ("jpeg", "png", "bgr8; jpeg
    compressed bgr8", ...). Pillow detects the codec from the bytes, so the
    string is only checked for the compressedDepth transport, whose custom
    header Pillow cannot read. Any Pillow mode becomes RGB; 16-bit greyscale is
    scaled by >> 8.
    """
    from PIL import Image

    if "compresseddepth" in format.lower():
        raise ImageDecodeError(f"compressed image format {format!r} (compressedDepth transport) is not supported")
    raw = bytes(data) if not isinstance(data, (bytes, bytearray)) else data
    if len(raw) == 0:
        raise ImageDecodeError(f"compressed image ({format!r}) has no data")
    try:
        with Image.open(io.BytesIO(raw)) as img:
            img.load()  # decode now, so corrupt or truncated data fails here
            return pil_to_rgb(img)
    except ImageDecodeError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"cannot decode compressed image ({format!r}, {len(raw)} bytes): {exc}") from exc


def pil_to_rgb(img) -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB (copy)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("RGB") clips 16-bit values instead of scaling them
        grey = np.asarray(img).astype(np.uint32)
        grey8 = np.clip(grey >> 8, 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


# ---------------------------------------------------------------- encoding


def encode_image(array: np.ndarray, encoding: str) -> Tuple[int, bytes]:
    """Pack an array into a little-endian sensor_msgs/Image buffer -> (step, data).

    rgb8: HxWx3 uint8.  mono8: HxW uint8.
    32FC1: HxW float (depth in metres, confidence), stored as float32.
    16UC1: HxW integer in [0, 65535] (depth in millimetres), stored as uint16.
    Rows are not padded: step = width * bytes per pixel.
    """
    arr = np.asarray(array)
    if encoding == "rgb8":
        _check_shape(arr, 3, encoding, channels=3)
        _check_dtype(arr, np.uint8, encoding)
        out = arr
    elif encoding == "mono8":
        _check_shape(arr, 2, encoding)
        _check_dtype(arr, np.uint8, encoding)
        out = arr
    elif encoding == "32FC1":
        _check_shape(arr, 2, encoding)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{encoding} needs a float array, got {arr.dtype}")
        out = arr.astype("<f4", copy=False)
    elif encoding == "16UC1":
        _check_shape(arr, 2, encoding)
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{encoding} needs an integer array (millimetres), got {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"{encoding} values must be in [0, 65535], got [{arr.min()}, {arr.max()}]")
        out = arr.astype("<u2", copy=False)
    else:
        raise ValueError(f"cannot encode {encoding!r}; supported: {', '.join(ENCODE_ENCODINGS)}")
    out = np.ascontiguousarray(out)
    step = out.shape[1] * out.itemsize * (out.shape[2] if out.ndim == 3 else 1)
    return int(step), out.tobytes()


def encode_compressed(rgb: np.ndarray, format: str = "jpeg", quality: int = 90) -> bytes:  # noqa: A002
    """Compress HxWx3 (RGB) or HxW (grey) uint8 to JPEG or PNG bytes.

    `quality` (1-95) applies to JPEG only; PNG is lossless.
    """
    from PIL import Image

    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"encode_compressed needs HxWx3 or HxW uint8, got {arr.shape} {arr.dtype}")
    fmt = format.lower()
    if fmt in ("jpg", "jpeg"):
        kwargs = {"format": "JPEG", "quality": int(quality)}
    elif fmt == "png":
        kwargs = {"format": "PNG"}
    else:
        raise ValueError(f"unsupported compressed format {format!r}; supported: jpeg, png")
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(out, **kwargs)
    return out.getvalue()


def _check_shape(arr: np.ndarray, ndim: int, encoding: str, channels: int = 0) -> None:
    if arr.ndim != ndim or (channels and arr.shape[2] != channels) or 0 in arr.shape:
        want = "HxWx3" if channels else "HxW"
        raise ValueError(f"{encoding} needs a non-empty {want} array, got shape {arr.shape}")


def _check_dtype(arr: np.ndarray, dtype, encoding: str) -> None:
    if arr.dtype != dtype:
        raise ValueError(f"{encoding} needs {np.dtype(dtype)}, got {arr.dtype}")
