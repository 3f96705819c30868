"""da3_ros.io.sources: image folders, videos and rosbag2 (sqlite3 and MCAP)."""

import json
import logging
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from da3_ros.io import bags
from da3_ros.io.inputs import open_source
from da3_ros.io.sources import SourceError, SourceFrame

RNG = np.random.default_rng(2)
TS = bags.get_typestore("humble")
K0 = np.array([[120.0, 0.0, 15.5], [0.0, 118.0, 11.5], [0.0, 0.0, 1.0]])
K1 = np.array([[240.0, 0.0, 16.0], [0.0, 236.0, 12.0], [0.0, 0.0, 1.0]])
T0 = 1_700_000_000.0  # epoch-sized stamps, as real bags have


def frames_rgb(n, h=24, w=32):
    return [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


# ---------------------------------------------------------------- image folder


def write_folder(path, images, names):
    path.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names):
        Image.fromarray(img).save(path / name)


def test_folder_with_timestamps_and_intrinsics(tmp_path):
    images = frames_rgb(3)
    names = ["frame2.png", "frame10.png", "frame1.png"]  # natural order: 1, 2, 10
    write_folder(tmp_path, images, names)
    (tmp_path / "timestamps.txt").write_text("# seconds, in image order\n100.0\n100.5\n\n101.25\n")
    (tmp_path / "intrinsics.json").write_text(json.dumps({"fx": 120, "fy": 118, "cx": 15.5, "cy": 11.5}))
    (tmp_path / "notes.txt").write_text("not an image")

    src = open_source(tmp_path)
    assert src.kind == "folder" and len(src) == 3
    frames = list(src)
    assert [f.stamp for f in frames] == [100.0, 100.5, 101.25]
    for frame, expected in zip(frames, [images[2], images[0], images[1]]):
        assert isinstance(frame, SourceFrame)
        np.testing.assert_array_equal(frame.image, expected)
        np.testing.assert_array_equal(frame.intrinsics, K0)
        assert (frame.width, frame.height) == (32, 24)
    assert [f.stamp for f in src] == [100.0, 100.5, 101.25]  # re-iterable


def test_folder_name_stamp_lines_K_matrix_and_jpeg(tmp_path):
    images = [np.full((16, 16, 3), v, np.uint8) for v in (10, 200)]
    write_folder(tmp_path, images, ["a.jpg", "b.jpeg"])
    (tmp_path / "timestamps.txt").write_text("b.jpeg 5.5\na.jpg 2.0\n")
    (tmp_path / "intrinsics.json").write_text(json.dumps({"K": K1.tolist()}))
    frames = list(open_source(tmp_path))
    assert [f.stamp for f in frames] == [2.0, 5.5]
    assert abs(int(frames[1].image.mean()) - 200) <= 2  # JPEG: close, not exact
    np.testing.assert_array_equal(frames[0].intrinsics, K1)


def test_folder_defaults_and_max_frames(tmp_path):
    write_folder(tmp_path, frames_rgb(4, 8, 8), [f"{i:03d}.png" for i in range(4)])
    src = open_source(tmp_path, max_frames=3)
    assert len(src) == 3
    frames = list(src)
    assert [f.stamp for f in frames] == pytest.approx([0.0, 1 / 30, 2 / 30])
    assert all(f.intrinsics is None for f in frames)


@pytest.mark.parametrize(
    "stamps,intrinsics,message",
    [
        ("1.0\n2.0\n", None, "2 stamps for 3 images"),
        ("000.png 1\n001.png 2\n", None, r"no stamp for 1 image\(s\), e.g. \['002.png'\]"),
        ("1.0\nabc\n2\n", None, "not a number"),
        (None, {"fx": 100, "cy": 3}, "expected"),
        (None, {"fx": 0, "fy": 1, "cx": 0, "cy": 0}, "focal lengths"),
    ],
)
def test_folder_bad_sidecar_files(tmp_path, stamps, intrinsics, message):
    write_folder(tmp_path, frames_rgb(3, 8, 8), [f"{i:03d}.png" for i in range(3)])
    if stamps is not None:
        (tmp_path / "timestamps.txt").write_text(stamps)
    if intrinsics is not None:
        (tmp_path / "intrinsics.json").write_text(json.dumps(intrinsics))
    with pytest.raises(SourceError, match=message):
        open_source(tmp_path)


def test_not_a_source(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="not an image folder, a video"):
        open_source(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no .png/.jpg/.jpeg images"):
        open_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="only for rosbag2"):
        open_source(tmp_path, image_topic="/cam/image_raw")


# ---------------------------------------------------------------- rosbag2


def write_camera_bag(path, storage, images, stamps, infos=(), topic="/cam/image_raw",
                     encoding="rgb8", compressed=None, extra=None):
    """A bag with one image topic and /cam/camera_info; infos = [(stamp, K, write after image i)]."""
    with bags.open_writer(path, storage=storage) as writer:
        msgtype = bags.COMPRESSED_IMAGE if compressed else bags.IMAGE
        image_conn = bags.add_topic(writer, topic, msgtype, TS)
        info_conn = bags.add_topic(writer, "/cam/camera_info", bags.CAMERA_INFO, TS)
        pending = sorted(infos, key=lambda item: item[2])
        for i, (img, t) in enumerate(zip(images, stamps)):
            if compressed:
                msg = bags.compressed_image_msg(TS, img, t, format=compressed)
            elif encoding == "bgr8":
                msg = bags.image_msg(TS, np.ascontiguousarray(img[:, :, ::-1]), "rgb8", t)
                msg.encoding = "bgr8"
            else:
                msg = bags.image_msg(TS, img, encoding, t)
            recv_ns = int(round(t * 1e9)) + 1000  # received a microsecond after capture
            writer.write(image_conn, recv_ns, bags.serialize(TS, msg))
            while pending and pending[0][2] == i:
                t_info, K, _ = pending.pop(0)
                info = bags.camera_info_msg(TS, K, img.shape[1], img.shape[0], t_info)
                writer.write(info_conn, recv_ns + 500, bags.serialize(TS, info))
        if extra:
            extra(writer)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_image_and_camera_info(tmp_path, storage):
    images = frames_rgb(4)
    stamps = [T0 + 0.1 * i for i in range(4)]
    # info for frame 0 recorded AFTER the image with the same stamp (normal for drivers);
    # a recalibration stamped at frame 2 -> frames 2 and 3 use K1
    infos = [(stamps[0], K0, 0), (stamps[2], K1, 2)]
    path = tmp_path / f"bag_{storage}"
    write_camera_bag(path, storage, images, stamps, infos)

    src = open_source(path)
    assert src.kind == "bag" and len(src) == 4
    assert src.image_topic == "/cam/image_raw" and src.camera_info_topic == "/cam/camera_info"
    frames = list(src)
    assert [f.stamp for f in frames] == pytest.approx(stamps, abs=1e-6)  # header stamps, not receive time
    for frame, img in zip(frames, images):
        np.testing.assert_array_equal(frame.image, img)
        assert frame.image.flags.writeable and frame.image.flags.c_contiguous
    for frame, K in zip(frames, [K0, K0, K1, K1]):
        np.testing.assert_array_equal(frame.intrinsics, K)

    # the bare storage file opens too
    suffix = ".mcap" if storage == "mcap" else ".db3"
    (bare,) = path.glob(f"*{suffix}")
    assert len(list(open_source(bare, max_frames=2))) == 2


def test_bag_image_before_any_camera_info_has_no_intrinsics(tmp_path):
    images = frames_rgb(3)
    stamps = [T0, T0 + 0.1, T0 + 0.2]
    path = tmp_path / "bag"
    write_camera_bag(path, "mcap", images, stamps, infos=[(stamps[1], K0, 1)])
    frames = list(open_source(path))
    assert frames[0].intrinsics is None
    np.testing.assert_array_equal(frames[1].intrinsics, K0)
    np.testing.assert_array_equal(frames[2].intrinsics, K0)


def test_bag_camera_info_at_other_resolution_is_rescaled(tmp_path):
    path = tmp_path / "bag"
    images = frames_rgb(1, 24, 32)

    def extra(writer):  # info calibrated at 64x48 (twice the published 32x24)
        conn = bags.add_topic(writer, "/cam/camera_info_full", bags.CAMERA_INFO, TS)
        writer.write(conn, int(T0 * 1e9), bags.serialize(TS, bags.camera_info_msg(TS, K1, 64, 48, T0)))

    write_camera_bag(path, "sqlite3", images, [T0], extra=extra)
    (frame,) = open_source(path, camera_info_topic="/cam/camera_info_full")
    np.testing.assert_allclose(frame.intrinsics, [[120, 0, 8], [0, 118, 6], [0, 0, 1]])


def test_bag_rectified_images_take_p_and_other_aspect_is_refused(tmp_path, caplog):
    import dataclasses

    path = tmp_path / "bag"
    images = frames_rgb(1, 24, 32)
    P = np.zeros((3, 4))
    P[:, :3] = [[30.0, 0, 15], [0, 30.0, 12], [0, 0, 1]]

    def extra(writer):  # raw K1 and rectified P; and a 16:9 info for these 4:3 images
        conn = bags.add_topic(writer, "/cam/camera_info_p", bags.CAMERA_INFO, TS)
        msg = dataclasses.replace(bags.camera_info_msg(TS, K1, 32, 24, T0), p=P.reshape(12))
        writer.write(conn, int(T0 * 1e9), bags.serialize(TS, msg))
        conn = bags.add_topic(writer, "/cam/camera_info_wide", bags.CAMERA_INFO, TS)
        writer.write(conn, int(T0 * 1e9), bags.serialize(TS, bags.camera_info_msg(TS, K1, 64, 36, T0)))

    write_camera_bag(path, "mcap", images, [T0], extra=extra)
    (frame,) = open_source(path, camera_info_topic="/cam/camera_info_p", rectified=True)
    np.testing.assert_array_equal(frame.intrinsics, P[:, :3])
    (frame,) = open_source(path, camera_info_topic="/cam/camera_info_p")
    np.testing.assert_array_equal(frame.intrinsics, K1)
    with caplog.at_level(logging.WARNING, logger="da3_ros.io.sources"):
        (frame,) = open_source(path, camera_info_topic="/cam/camera_info_wide")
    assert frame.intrinsics is None  # estimated downstream
    assert "ignoring CameraInfo" in caplog.text and "another aspect ratio" in caplog.text
    with pytest.raises(SourceError, match="only for rosbag2"):
        open_source(tmp_path, rectified=True)


def test_bag_bgr8_and_mono8(tmp_path):
    images = frames_rgb(2)
    write_camera_bag(tmp_path / "bgr", "mcap", images, [T0, T0 + 1], encoding="bgr8")
    for frame, img in zip(open_source(tmp_path / "bgr"), images):
        np.testing.assert_array_equal(frame.image, img)
    grey = [img[:, :, 0].copy() for img in images]
    write_camera_bag(tmp_path / "mono", "mcap", grey, [T0, T0 + 1], encoding="mono8")
    for frame, g in zip(open_source(tmp_path / "mono"), grey):
        np.testing.assert_array_equal(frame.image, np.repeat(g[:, :, None], 3, 2))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_compressed_images(tmp_path, storage):
    images = frames_rgb(3)
    stamps = [T0 + 0.05 * i for i in range(3)]
    path = tmp_path / "png"
    write_camera_bag(path, storage, images, stamps, infos=[(stamps[0], K0, 0)],
                     topic="/cam/image_raw/compressed", compressed="png")
    src = open_source(path)
    assert src.image_topic == "/cam/image_raw/compressed"
    frames = list(src)
    assert [f.stamp for f in frames] == pytest.approx(stamps, abs=1e-6)
    for frame, img in zip(frames, images):
        np.testing.assert_array_equal(frame.image, img)  # PNG: lossless
        np.testing.assert_array_equal(frame.intrinsics, K0)

    smooth = [np.broadcast_to(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 32, 3)).copy()]
    write_camera_bag(tmp_path / "jpeg", storage, smooth, [T0], compressed="jpeg")
    (frame,) = open_source(tmp_path / "jpeg")
    assert np.abs(frame.image.astype(int) - smooth[0]).mean() < 3


def test_bag_bad_messages_are_skipped_with_warning(tmp_path, caplog):
    path = tmp_path / "bag"
    images = frames_rgb(3)

    def extra(writer):
        conn = writer.connections[0]
        bad = bags.image_msg(TS, images[0], "rgb8", T0 + 0.5)
        bad.data = bad.data[:-10]  # truncated pixel data
        writer.write(conn, int((T0 + 0.5) * 1e9), bags.serialize(TS, bad))
        writer.write(conn, int((T0 + 0.6) * 1e9), b"\x00\x01garbage")  # not CDR at all
        odd = bags.image_msg(TS, images[0], "rgb8", T0 + 0.7)
        odd.encoding = "yuv422"
        writer.write(conn, int((T0 + 0.7) * 1e9), bags.serialize(TS, odd))

    write_camera_bag(path, "mcap", images, [T0, T0 + 0.1, T0 + 0.2], extra=extra)
    caplog.set_level(logging.WARNING, logger="da3_ros.io.sources")
    src = open_source(path)
    assert len(src) == 6  # message count, an upper bound
    frames = list(src)
    assert len(frames) == 3
    assert [f.stamp for f in frames] == pytest.approx([T0, T0 + 0.1, T0 + 0.2], abs=1e-6)
    text = caplog.text
    assert "truncated" in text and "yuv422" in text and "undecodable" in text


def test_bag_many_bad_messages_are_summarised(tmp_path, caplog):
    path = tmp_path / "bag"

    def extra(writer):
        for i in range(8):
            writer.write(writer.connections[0], int(T0 * 1e9) + i, b"junk")

    write_camera_bag(path, "sqlite3", frames_rgb(1), [T0], extra=extra)
    caplog.set_level(logging.WARNING, logger="da3_ros.io.sources")
    assert len(list(open_source(path))) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("skipping" in m for m in messages) == 5
    assert any("skipped 8 bad messages" in m for m in messages)


def test_bag_unstamped_images_fall_back_to_receive_time(tmp_path):
    path = tmp_path / "bag"
    write_camera_bag(path, "mcap", frames_rgb(1), [0.0])
    (frame,) = open_source(path)
    assert frame.stamp == pytest.approx(1e-6)  # receive time = stamp + 1 us in write_camera_bag


def test_bag_topic_selection(tmp_path):
    path = tmp_path / "bag"

    def extra(writer):
        conn = bags.add_topic(writer, "/cam2/image_raw", bags.IMAGE, TS)
        writer.write(conn, int(T0 * 1e9), bags.serialize(TS, bags.image_msg(TS, frames_rgb(1)[0], "rgb8", T0)))

    write_camera_bag(path, "sqlite3", frames_rgb(2), [T0, T0 + 1], extra=extra)
    with pytest.raises(SourceError, match=r"several image topics, choose one: \['/cam/image_raw', '/cam2/image_raw'\]"):
        open_source(path)
    assert len(open_source(path, image_topic="/cam2/image_raw")) == 1
    with pytest.raises(SourceError, match=r"no topic '/nope'; image topics: \['/cam/image_raw', '/cam2/image_raw'\]"):
        open_source(path, image_topic="/nope")
    with pytest.raises(SourceError, match="has type sensor_msgs/msg/CameraInfo, expected"):
        open_source(path, image_topic="/cam/camera_info")


def test_bag_several_camera_infos_prefers_sibling_topic(tmp_path):
    path = tmp_path / "bag"

    def extra(writer):
        conn = bags.add_topic(writer, "/other/camera_info", bags.CAMERA_INFO, TS)
        writer.write(conn, int(T0 * 1e9), bags.serialize(TS, bags.camera_info_msg(TS, K1, 32, 24, T0)))

    write_camera_bag(path, "mcap", frames_rgb(1), [T0], infos=[(T0, K0, 0)], extra=extra)
    src = open_source(path)
    assert src.camera_info_topic == "/cam/camera_info"
    np.testing.assert_array_equal(next(iter(src)).intrinsics, K0)


def test_bag_without_image_topic(tmp_path):
    path = tmp_path / "bag"
    with bags.open_writer(path, storage="mcap") as writer:
        conn = bags.add_topic(writer, "/cam/camera_info", bags.CAMERA_INFO, TS)
        writer.write(conn, 1, bags.serialize(TS, bags.camera_info_msg(TS, K0, 32, 24, 1.0)))
    with pytest.raises(SourceError, match="no sensor_msgs/Image or CompressedImage topic"):
        open_source(path)


# ---------------------------------------------------------------- video


def write_video(path, images, codec, fps, pix_fmt):
    av = pytest.importorskip("av", reason="PyAV (pip install av) is the optional video dependency")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = images[0].shape[1], images[0].shape[0], pix_fmt
        for img in images:
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_lossless_frames_and_stamps(tmp_path):
    images = frames_rgb(5)
    path = tmp_path / "clip.mkv"
    write_video(path, images, "ffv1", 10, "bgr0")  # ffv1 in RGB: lossless, exact comparison possible
    src = open_source(path)
    assert src.kind == "video"
    with pytest.raises(TypeError, match="no known length"):
        len(src)  # Matroska does not store a frame count
    frames = list(src)  # list() must still work on an unsized source
    assert len(frames) == 5
    assert [f.stamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-3)
    for frame, img in zip(frames, images):
        np.testing.assert_array_equal(frame.image, img)
        assert frame.intrinsics is None


def test_video_mp4_h264_stamps_and_length(tmp_path):
    images = [np.full((32, 48, 3), 16 * i, np.uint8) for i in range(8)]
    path = tmp_path / "clip.mp4"
    write_video(path, images, "libx264", Fraction(25), "yuv420p")
    src = open_source(path, max_frames=6)
    assert len(src) == 6  # mp4 stores the frame count
    frames = list(src)
    assert [f.stamp for f in frames] == pytest.approx([i / 25 for i in range(6)], abs=1e-3)
    assert [abs(int(f.image.mean()) - 16 * i) <= 3 for i, f in enumerate(frames)] == [True] * 6


def test_video_corrupt_file(tmp_path):
    pytest.importorskip("av", reason="PyAV (pip install av) is the optional video dependency")
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(path)
