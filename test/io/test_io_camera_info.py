"""Reading a sensor_msgs/CameraInfo for the images it comes with (da3_ros.io.camera_info):
K or P, binning and ROI (REP 104), resized streams, and every way it can be unusable.
Messages are real CameraInfo types (rosbags' typestore; rclpy's have the same fields)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from da3_ros.io import bags
from da3_ros.io.camera_info import CameraInfoError, CameraInfoReader, camera_info_intrinsics

TS = bags.get_typestore("humble")
ROI = TS.types["sensor_msgs/msg/RegionOfInterest"]
K = np.array([[500.0, 0.0, 319.5], [0.0, 498.0, 239.5], [0.0, 0.0, 1.0]])


def info(K=K, width=640, height=480, **fields):
    msg = bags.camera_info_msg(TS, K, width, height, 0.0)
    return dataclasses.replace(msg, **fields)


def project(K, X):
    x = K @ X
    return x[:2] / x[2]


def test_plain_k_for_its_own_image_size():
    got, notes = camera_info_intrinsics(info(), 640, 480)
    np.testing.assert_array_equal(got, K)
    assert notes == []


def test_binning_and_roi_describe_the_read_out_window():
    X = np.array([0.3, -0.2, 2.0])  # a point in the camera frame, metres
    u_full = project(K, X)
    # 2x2 binning: a full-resolution pixel u lies at u / 2 in the binned image
    got, notes = camera_info_intrinsics(info(binning_x=2, binning_y=2), 320, 240)
    np.testing.assert_allclose(project(got, X), u_full / 2)
    assert notes == []
    # ROI 200x100 at (40, 30): pixel u lies at u - offset in the cropped image
    roi = ROI(x_offset=40, y_offset=30, height=100, width=200, do_rectify=False)
    got, _ = camera_info_intrinsics(info(roi=roi), 200, 100)
    np.testing.assert_allclose(project(got, X), u_full - (40, 30))
    # both: the ROI is in full-resolution pixels, binning applies after it
    roi = ROI(x_offset=40, y_offset=20, height=200, width=400, do_rectify=False)
    got, _ = camera_info_intrinsics(info(roi=roi, binning_x=2, binning_y=4), 200, 50)
    np.testing.assert_allclose(project(got, X), (u_full - (40, 20)) / (2, 4))


def test_rectified_images_take_p():
    P = np.zeros((3, 4))
    P[:, :3] = [[480.0, 0, 330.0], [0, 480.0, 240.0], [0, 0, 1]]
    P[0, 3] = -48.0  # a right stereo camera's baseline term is not part of the intrinsics
    msg = info(p=P.reshape(12), d=np.array([-0.3, 0.1, 0.0, 0.0, 0.0]))
    got, notes = camera_info_intrinsics(msg, 640, 480, rectified=True)
    np.testing.assert_array_equal(got, P[:, :3])
    assert notes == []  # distortion is the raw image's business
    got, notes = camera_info_intrinsics(msg, 640, 480)
    np.testing.assert_array_equal(got, K)
    assert len(notes) == 1 and "distortion [-0.3, 0.1, 0.0, 0.0, 0.0]" in notes[0] and "input_rectified" in notes[0]
    with pytest.raises(CameraInfoError, match="P is all zeros"):
        camera_info_intrinsics(info(p=np.zeros(12)), 640, 480, rectified=True)


def test_resized_stream_of_the_same_aspect_is_scaled_with_a_note():
    got, notes = camera_info_intrinsics(info(), 320, 240)
    np.testing.assert_allclose(got, [[250.0, 0, 159.75], [0, 249.0, 119.75], [0, 0, 1]])
    assert len(notes) == 1 and "640x480" in notes[0] and "320x240" in notes[0] and "scaled by 0.5" in notes[0]
    with pytest.raises(CameraInfoError, match=r"describes 640x480 images but the image is 640x360, another aspect"):
        camera_info_intrinsics(info(), 640, 360)
    with pytest.raises(CameraInfoError, match=r"binning 2x2\) but the image is 640x480"):
        camera_info_intrinsics(info(width=1280, height=480, binning_x=2, binning_y=2), 640, 480)


def test_reader_says_each_remark_once():
    reader = CameraInfoReader()
    K1, notes = reader.read(info(), 320, 240)
    assert len(notes) == 1 and "scaled by 0.5" in notes[0]
    K2, notes = reader.read(info(), 320, 240)
    np.testing.assert_array_equal(K1, K2)
    assert notes == []  # said already
    assert reader.fresh(["a", "a", "b"]) == ["a", "b"]
    assert reader.fresh(["a", "c"]) == ["c"]


@pytest.mark.parametrize("msg, message", [
    (info(K=np.zeros((3, 3))), "non-positive focal lengths"),
    (info(K=np.full((3, 3), np.nan)), "non-finite"),
    (info(K=np.array([[500.0, 0, 320], [3.0, 500, 240], [0, 0, 1]])), "not an upper-triangular pinhole"),
    (info(width=0, height=0), "no image size"),
    (info(K=np.array([[500.0, 0, 900], [0, 500, 240], [0, 0, 1]])), r"principal point \(900.0, 240.0\) lies outside"),
])
def test_unusable_camera_info_says_why(msg, message):
    with pytest.raises(CameraInfoError, match=message):
        camera_info_intrinsics(msg, 640, 480)
