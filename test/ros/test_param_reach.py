"""Every parameter of da3_node reaches the object that uses it.

One node is started with EVERY parameter set to a value other than its default
(the model through its spec, the rest at once); then each parameter is looked
up where it is consumed: the streaming core's config, the message builder's
options, the model settings, the subscriptions, the timers, the save service.
A parameter declared but consumed nowhere (as `keyframe_depth_ratio` once was)
fails here, and so does a parameter this test does not know."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy

from da3_ros.ros.params import PARAMETERS, default_config, model_settings
from da3_ros.synthetic.sequence import make_sequence, write_sequence

#: a value other than the default for every parameter (valid together)
CHANGED = {
    "model": "set below (an oracle spec)", "model_variant": "da3-small", "device": "cpu", "precision": "fp32",
    "process_res": 266, "pose_source": "camera", "ray_map": "full", "reference_strategy": "middle", "compile": "off",
    "attention_kernel": "math", "head_channels_last": False, "compile_dynamic": True,
    "inductor_mode": "max-autotune-no-cudagraphs",
    "warmup_width": 32, "warmup_height": 24,
    "window_size": 5, "stride": 2, "keyframe_translation": 0.25, "keyframe_depth_ratio": 0.2,
    "keyframe_rotation_deg": 12.0, "keyframe_interval": 3.0, "max_stamp_jump": 2.5,
    "world_frame": "map_test", "base_frame": "base_test", "camera_frame": "cam_test_optical",
    "cameras": ["front", "left"], "rig_sync_tolerance": 0.02, "rig_max_wait": 0.3, "rig_scale_max_error": 0.05,
    "publish_tf": False, "use_compressed": True, "input_reliability": "reliable", "use_camera_info": False,
    "input_rectified": True, "external_odometry_topic": "/test_odom", "external_odometry_max_dt": 0.2,
    "publish_depth": False, "publish_confidence": False, "publish_points": False, "publish_map": False,
    "publish_odometry": False, "publish_keyframes": False,
    "min_depth": 0.5, "max_depth": 33.0, "min_confidence": 2.5, "point_decimation": 3,
    "map_voxel_size": 0.2, "map_max_points": 12345, "map_publish_period": 0.7, "path_max_length": 77, "path_publish_period": 0.45,
    "save_directory": "set below (a temporary folder)", "diagnostics_period": 0.3,
}


def test_every_parameter_has_a_changed_value():
    assert set(CHANGED) == set(PARAMETERS), set(CHANGED) ^ set(PARAMETERS)
    for name, spec in PARAMETERS.items():
        assert CHANGED[name] != spec.default, name


@pytest.fixture
def node(ros_context, tmp_path, monkeypatch):
    from da3_ros.ros.node import Da3Node
    from da3_ros.runtime import models

    seq = make_sequence("forward", n_frames=3, width=32, height=24)
    write_sequence(seq, tmp_path / "seq")
    values = dict(CHANGED, model=f"oracle:{tmp_path / 'seq'}", save_directory=str(tmp_path / "saved"))
    built, warmups = [], []
    real = models.make_window_model

    def recording(settings):  # the real factory; the oracle has no warm-up, so record the node's call
        model = real(settings)
        model.warmup = lambda width, height, window: warmups.append((width, height, window))
        built.append(settings)
        return model

    monkeypatch.setattr(models, "make_window_model", recording)
    n = Da3Node(context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    n.test_values, n.test_warmups, (n.test_settings,) = values, warmups, built
    yield n
    n.destroy_node()


def test_every_parameter_reaches_its_consumer(node):
    v = node.test_values
    stream = node.pipeline.streamer.config
    options = node.pipeline.builder.options
    settings = node.test_settings
    subs = {s.topic_name: s for s in node.subscriptions}
    timers = sorted(t.timer_period_ns for t in node.timers)

    reach = {
        # model: the settings the factory built the model from
        **{name: lambda name=name: getattr(settings, name) == v[name]
           for name in ("model", "model_variant", "device", "precision", "process_res", "pose_source", "ray_map", "compile",
                        "attention_kernel", "head_channels_last", "compile_dynamic", "inductor_mode",
                        "reference_strategy")},
        "warmup_width": lambda: node.test_warmups == [(v["warmup_width"], v["warmup_height"], v["window_size"])],
        "warmup_height": lambda: node.test_warmups[0][1] == v["warmup_height"],
        # the streaming core
        "window_size": lambda: stream.window_size == v["window_size"],
        "stride": lambda: stream.stride == v["stride"],
        "keyframe_translation": lambda: stream.keyframe_translation == v["keyframe_translation"],
        "keyframe_depth_ratio": lambda: stream.keyframe_depth_ratio == v["keyframe_depth_ratio"],
        "keyframe_rotation_deg": lambda: stream.keyframe_rotation_deg == v["keyframe_rotation_deg"],
        "keyframe_interval": lambda: stream.keyframe_interval == v["keyframe_interval"],
        "max_stamp_jump": lambda: node.pipeline.streamer._timeline.max_forward_jump_s == v["max_stamp_jump"],
        "min_depth": lambda: stream.depth_range[0] == v["min_depth"],
        "max_depth": lambda: stream.depth_range[1] == v["max_depth"],
        "min_confidence": lambda: stream.min_confidence == v["min_confidence"],
        "map_voxel_size": lambda: node.pipeline.streamer.world._map.voxel_size == v["map_voxel_size"],
        "map_max_points": lambda: node.pipeline.streamer.world._map.max_points == v["map_max_points"],
        "path_max_length": lambda: options.path_max_length == v["path_max_length"]
        and stream.path_max_length == v["path_max_length"],
        "publish_map": lambda: stream.map_from == "none" and "map" not in node.pipeline.switched_on,
        # the message builder
        "world_frame": lambda: options.world_frame == v["world_frame"],
        "base_frame": lambda: options.base_frame == v["base_frame"],
        "point_decimation": lambda: options.point_decimation == v["point_decimation"],
        **{name: lambda name=name: options.switches[name] is False
           for name in ("publish_tf", "publish_depth", "publish_confidence", "publish_points", "publish_odometry",
                        "publish_keyframes")},
        # inputs
        "use_compressed": lambda: any(t.endswith("/image/compressed") for t in subs)
        and not any(t.endswith("/image") for t in subs),
        "input_reliability": lambda: all(s.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                         for t, s in subs.items() if t.endswith("image/compressed")),
        "use_camera_info": lambda: not any(t.endswith("camera_info") for t in subs),
        "input_rectified": lambda: _rectified_intrinsics_used(node),
        "external_odometry_topic": lambda: "/test_odom" in subs,
        "external_odometry_max_dt": lambda: node.pipeline.cfg.external_odometry_max_dt == v["external_odometry_max_dt"],
        "camera_frame": lambda: node.pipeline.cfg.camera_frame == v["camera_frame"],
        # a rig
        "cameras": lambda: all(any(t.endswith(f"/{c}/image/compressed") for t in subs) for c in v["cameras"])
        and stream.cameras == tuple(v["cameras"]) and node.pipeline.session.sync.cameras == tuple(v["cameras"]),
        "rig_sync_tolerance": lambda: node.pipeline.session.sync.tolerance == v["rig_sync_tolerance"],
        "rig_max_wait": lambda: node.pipeline.session.sync.max_wait == v["rig_max_wait"],
        "rig_scale_max_error": lambda: stream.rig_scale_max_error == v["rig_scale_max_error"],
        # timers and services
        "map_publish_period": lambda: int(v["map_publish_period"] * 1e9) in timers,
        "path_publish_period": lambda: int(v["path_publish_period"] * 1e9) in timers,
        "diagnostics_period": lambda: int(v["diagnostics_period"] * 1e9) in timers,
        "save_directory": lambda: _saved(node, v["save_directory"]),
    }
    assert set(reach) == set(PARAMETERS), f"parameters without a consumer check: {set(PARAMETERS) ^ set(reach)}"
    missed = [name for name, check in reach.items() if not check()]
    assert not missed, f"parameters that did not reach their consumer: {missed}"


def _rectified_intrinsics_used(node) -> bool:
    """With input_rectified, a camera's intrinsics are its CameraInfo's P, not K."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo(width=32, height=24, k=[30.0, 0, 16, 0, 30.0, 12, 0, 0, 1],
                      p=[40.0, 0, 15, 0, 0, 40.0, 11, 0, 0, 0, 1, 0])
    K, _ = node.pipeline.camera_info_reader("front").read(info, 32, 24)
    return K[0, 0] == 40.0 and K[0, 2] == 15.0


def _saved(node, directory) -> bool:
    import pathlib

    from std_srvs.srv import Trigger

    response = node._on_save(Trigger.Request(), Trigger.Response())
    return response.success and (pathlib.Path(directory) / "trajectory.tum").is_file()


def test_camera_frame_names_the_published_frame(tmp_path):
    """camera_frame is read per image (the pipeline's consumer, checked on a message)."""
    from da3_ros.ros.conversions import array_to_image, ns_to_stamp
    from da3_ros.ros.frame_pipeline import FramePipeline
    from da3_ros.synthetic.oracle import OracleModel
    from std_msgs.msg import Header

    seq = make_sequence("forward", n_frames=2, width=32, height=24)
    cfg = default_config(camera_frame="cam_test_optical", window_size=2)
    pipeline = FramePipeline(OracleModel(seq), cfg, warn=lambda text: None)
    msg = array_to_image(np.ascontiguousarray(seq.images[0]), "rgb8",
                         Header(stamp=ns_to_stamp(int(seq.stamps[0] * 1e9)), frame_id="driver_frame"))
    (messages,) = pipeline.process(msg, compressed=False)
    depth = dict((o.name, m) for o, m in messages)["depth"]
    assert depth.header.frame_id == "cam_test_optical"


def test_model_settings_carry_every_model_parameter():
    names = ("model_variant", "device", "precision", "process_res", "pose_source", "ray_map", "reference_strategy",
             "compile", "attention_kernel", "head_channels_last", "compile_dynamic", "inductor_mode")
    s = model_settings(default_config(**{k: CHANGED[k] for k in names}, model="random:da3-small"))
    assert s.model == "random:da3-small"
    assert {k: getattr(s, k) for k in names} == {k: CHANGED[k] for k in names}
