"""Official preprocessing sizes, on-device normalisation, native-resolution maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from da3_ros.model.preprocess import (IMAGENET_MEAN, IMAGENET_STD, intrinsics_to_native, intrinsics_to_processed,
                                      map_to_native, preprocess, processed_size)


@pytest.mark.parametrize("hw,expected", [
    ((480, 640), (378, 504)), ((1080, 1920), (280, 504)), ((48, 64), (378, 504)),
    ((504, 504), (504, 504)), ((720, 1280), (280, 504)), ((1200, 1600), (378, 504)),
])
def test_processed_size_matches_official_rule(hw, expected):
    assert processed_size(*hw) == expected


def test_preprocess_normalises_on_device_and_resizes():
    img = np.full((48, 64, 3), (255, 128, 0), dtype=np.uint8)
    x = preprocess([img, img], "cpu", process_res=126)
    assert x.shape == (2, 3, 98, 126) and x.dtype == torch.float32
    expect = [(v / 255 - m) / s for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD)]
    for c in range(3):
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], expect[c]), atol=1e-4)


def test_preprocess_rejects_mixed_network_sizes_and_bad_dtype():
    with pytest.raises(ValueError, match="one network size"):
        preprocess([np.zeros((48, 64, 3), np.uint8), np.zeros((64, 48, 3), np.uint8)], process_res=126)
    with pytest.raises(ValueError, match="uint8"):
        preprocess([np.zeros((48, 64, 3), np.float32)])


def test_intrinsics_round_trip_and_native_maps():
    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    Kp = intrinsics_to_processed(K, (480, 640), (378, 504))
    assert Kp[0, 0] == pytest.approx(500 * 504 / 640) and Kp[1, 2] == pytest.approx(240 * 378 / 480)
    np.testing.assert_allclose(intrinsics_to_native(Kp, (378, 504), (480, 640)), K)
    d = torch.arange(12.0).reshape(1, 3, 4) + 1
    up = map_to_native(d, (6, 8))
    assert up.shape == (1, 6, 8) and float(up.min()) >= 1 and float(up.max()) <= 12
