"""da3_ros.io.bags: rosbags reader/writer helpers and message builders."""

import numpy as np
import pytest

from da3_ros.io import bags
from da3_ros.io.images import decode_depth, decode_image

TS = bags.get_typestore("humble")


def write_two_topics(path, storage):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    latched = Qos(
        QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
        QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False,
    )
    with bags.open_writer(path, storage=storage) as writer:
        img = bags.add_topic(writer, "/cam/image_raw", bags.IMAGE, TS)
        info = bags.add_topic(writer, "/cam/camera_info", bags.CAMERA_INFO, TS, qos=[latched])
        rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        writer.write(info, 5, bags.serialize(TS, bags.camera_info_msg(TS, np.eye(3), 3, 2, 0.0)))
        for i in range(3):
            writer.write(img, 10 + i, bags.serialize(TS, bags.image_msg(TS, rgb, "rgb8", 1.0 + i)))
    return rgb


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_write_list_iterate(tmp_path, storage):
    path = tmp_path / "bag"
    rgb = write_two_topics(path, storage)
    assert bags.is_bag_path(path)
    with bags.open_reader(path) as reader:
        assert bags.list_topics(reader) == [
            bags.BagTopic("/cam/camera_info", bags.CAMERA_INFO, 1),
            bags.BagTopic("/cam/image_raw", bags.IMAGE, 3),
        ]
        everything = list(bags.iter_messages(reader))
        assert [(m.topic, m.timestamp_ns) for m in everything] == [
            ("/cam/camera_info", 5), ("/cam/image_raw", 10), ("/cam/image_raw", 11), ("/cam/image_raw", 12)
        ]
        images = list(bags.iter_messages(reader, ["/cam/image_raw"]))
        assert len(images) == 3 and all(m.msgtype == bags.IMAGE for m in images)
        msg = bags.deserialize(TS, images[1].rawdata, images[1].msgtype)
        assert bags.stamp_to_sec(msg.header.stamp) == 2.0 and msg.header.frame_id == "camera"
        np.testing.assert_array_equal(decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data), rgb)
        assert list(bags.iter_messages(reader, ["/absent"])) == []
        (info_conn,) = [c for c in reader.connections if c.topic == "/cam/camera_info"]
        assert info_conn.ext.offered_qos_profiles[0].durability.name == "TRANSIENT_LOCAL"


def test_reading_with_jazzy_typestore(tmp_path):
    write_two_topics(tmp_path / "bag", "mcap")
    jazzy = bags.get_typestore("jazzy")
    with bags.open_reader(tmp_path / "bag") as reader:
        m = next(bags.iter_messages(reader, ["/cam/camera_info"]))
        info = bags.deserialize(jazzy, m.rawdata, m.msgtype)
    np.testing.assert_array_equal(info.k.reshape(3, 3), np.eye(3))


def test_writer_refuses_existing_path_and_unknown_storage(tmp_path):
    (tmp_path / "exists").mkdir()
    with pytest.raises(bags.BagError, match="exists already"):
        with bags.open_writer(tmp_path / "exists"):
            pass
    with pytest.raises(bags.BagError, match="unknown bag storage 'rosbag1'"):
        with bags.open_writer(tmp_path / "x", storage="rosbag1"):
            pass


def test_open_reader_rejects_non_bags(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(bags.BagError, match="is not a rosbag2"):
        with bags.open_reader(tmp_path / "dir"):
            pass
    (tmp_path / "broken.mcap").write_bytes(b"nonsense")
    with pytest.raises(bags.BagError, match="cannot open bag"):
        with bags.open_reader(tmp_path / "broken.mcap"):
            pass


def test_unknown_distro():
    with pytest.raises(bags.BagError, match="unknown ROS 2 distro 'rolling'.*humble"):
        bags.get_typestore("rolling")


def test_make_stamp_rounds_with_carry():
    stamp = bags.make_stamp(TS, 12.9999999999)
    assert (stamp.sec, stamp.nanosec) == (13, 0)
    stamp = bags.make_stamp(TS, 1_700_000_000.25)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 250_000_000)
    assert bags.stamp_to_ns(stamp) == 1_700_000_000_250_000_000
    with pytest.raises(ValueError, match=">= 0"):
        bags.make_stamp(TS, -1.0)


def test_message_builders_round_trip_through_cdr():
    depth = np.array([[1.5, np.nan], [0.25, 3.0]], dtype=np.float32)
    msg = bags.deserialize(TS, bags.serialize(TS, bags.image_msg(TS, depth, "32FC1", 3.0, "cam_optical")), bags.IMAGE)
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("32FC1", 8, "cam_optical")
    np.testing.assert_array_equal(decode_depth(msg.encoding, msg.height, msg.width, msg.step, msg.data), depth)

    K = np.array([[500.0, 0, 320], [0, 510.0, 240], [0, 0, 1]])
    info = bags.deserialize(TS, bags.serialize(TS, bags.camera_info_msg(TS, K, 640, 480, 3.0)), bags.CAMERA_INFO)
    np.testing.assert_array_equal(info.k.reshape(3, 3), K)
    np.testing.assert_array_equal(info.p.reshape(3, 4)[:, :3], K)
    assert (info.width, info.height, info.distortion_model, len(info.d)) == (640, 480, "plumb_bob", 5)

    rgb = np.zeros((4, 4, 3), np.uint8)
    comp = bags.deserialize(TS, bags.serialize(TS, bags.compressed_image_msg(TS, rgb, 3.0, format="png")),
                            bags.COMPRESSED_IMAGE)
    assert comp.format == "png" and bytes(comp.data[:4]) == b"\x89PNG"
