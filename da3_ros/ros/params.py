"""Every parameter of da3_node, declared in one place with its descriptor.

`config/live.yaml` lists the same names with comments; a test checks that the two
agree. Units are in the names or descriptions (metres, seconds, pixels, degrees).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from da3_ros.ros.outputs import OUTPUTS, OutputOptions
from da3_ros.runtime.models import PROCESS_RES_RANGE, ModelSettings
from da3_ros.stream.config import StreamConfig

#: the publish_* parameters, from the output table
OUTPUT_SWITCHES = tuple(dict.fromkeys(o.switch for o in OUTPUTS if o.switch))


@dataclass(frozen=True)
class Spec:
    default: Any
    description: str
    range: Optional[Tuple[float, float, float]] = None  # (from, to, step); step 0 = continuous
    choices: Tuple[str, ...] = ()
    read_only: bool = True  # changing it needs a restart (model, topics, QoS)


PARAMETERS: Dict[str, Spec] = {
    # ---- model
    "model": Spec("default",
                  "DA3 checkpoint: default (depth-anything/DA3-SMALL if cached or reachable, else the embedded "
                  "synthetic-trained da3-tiny), a hub id, a local hub-layout directory, a .safetensors file "
                  "(with model_variant), or random:<variant> (random weights, tests only)"),
    "model_variant": Spec("", "variant name when `model` is a bare .safetensors file (e.g. da3-small)"),
    "device": Spec("auto", "torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ..."),
    "precision": Spec("auto", "network precision: auto (bf16 on GPUs that support it, fp16 on older GPUs, fp32 on CPU)",
                      choices=("auto", "fp32", "bf16", "fp16")),
    "process_res": Spec(504, "longest image side fed to the network, pixels (rounded to a multiple of 14); the "
                             "default 504 is each checkpoint's own size (the embedded da3-tiny: 252, and it refuses "
                             "other values)", range=(*PROCESS_RES_RANGE, 14)),
    "pose_source": Spec("ray", "camera poses from the ray head (more accurate) or the camera head (cheaper)",
                        choices=("ray", "camera")),
    "reference_strategy": Spec("saddle_balanced", "reference view of a window (DA3's strategies)",
                               choices=("saddle_balanced", "saddle_sim_range", "first", "middle")),
    "warmup_width": Spec(0, "camera image width, pixels, to compile/capture the network for at start-up; "
                            "0: warm up when the first image arrives", range=(0, 8192, 1)),
    "warmup_height": Spec(0, "camera image height, pixels, for the start-up warm-up (with warmup_width)",
                          range=(0, 8192, 1)),
    # ---- window and scheduling
    "window_size": Spec(8, "frames in the sliding window (keyframes plus the newest frame)", range=(2, 64, 1)),
    "stride": Spec(1, "new frames per inference: 1 answers every frame the worker takes", range=(1, 32, 1)),
    "keyframe_translation": Spec(0.0, "a frame becomes a keyframe after this much camera motion, world units "
                                      "(metres when metric); 0: off", range=(0.0, 100.0, 0.0), read_only=False),
    "keyframe_depth_ratio": Spec(0.05, "... or after moving this fraction of the scene's median depth "
                                       "(scale-free: works at a relative model's arbitrary scale); 0: off",
                                 range=(0.0, 10.0, 0.0), read_only=False),
    "keyframe_rotation_deg": Spec(5.0, "... or after this much camera rotation, degrees", range=(0.0, 180.0, 0.0),
                                  read_only=False),
    "keyframe_interval": Spec(1.0, "... or after this long without a keyframe, seconds", range=(0.0, 3600.0, 0.0),
                              read_only=False),
    "max_stamp_jump": Spec(10.0, "a frame stamped more than this many seconds after the last one (or any time "
                                 "before it) is held until the next frame says which timeline is real: one bad "
                                 "stamp is dropped, a real restart of time (looping bag) resets the world",
                           range=(0.001, 1e6, 0.0)),
    # ---- frames (REP 103 / 105)
    "world_frame": Spec("odom", "fixed frame of poses, path and map (REP 105: odom)"),
    "base_frame": Spec("", "if set, TF and odometry are published for this frame (e.g. base_link), using the fixed "
                           "base -> camera transform from /tf_static; the world origin is then this frame at start"),
    "camera_frame": Spec("", "optical frame id of the camera; empty: the image header's frame_id (single camera)"),
    # ---- multi-camera rigs
    "cameras": Spec([], "camera names of a rig, e.g. [front, left]: one node subscribes to <camera>/image and "
                        "<camera>/camera_info of each and publishes each camera's outputs under <camera>/; "
                        "empty: one camera on image and camera_info"),
    "rig_sync_tolerance": Spec(0.005, "images of a rig whose stamps lie within this many seconds form one rig "
                                      "frame", range=(0.0, 1.0, 0.0)),
    "rig_max_wait": Spec(0.1, "a rig frame waits at most this long (seconds of stamp time) for a late camera, "
                              "then goes without it", range=(0.001, 10.0, 0.0)),
    "rig_scale_max_error": Spec(0.01, "with the rig's extrinsics in /tf_static (base_frame -> each camera), depth "
                                      "and poses turn metric once the scale from the baselines is this precise "
                                      "(relative standard error)", range=(0.0001, 0.5, 0.0)),
    "publish_tf": Spec(True, "publish the world -> camera (or world -> base_frame) transform", read_only=False),
    # ---- inputs
    "use_compressed": Spec(False, "subscribe to image/compressed (JPEG/PNG) instead of image"),
    "input_reliability": Spec("best_effort", "QoS reliability of the image and camera_info subscriptions "
                                             "(camera drivers publish best effort)",
                              choices=("best_effort", "reliable")),
    "use_camera_info": Spec(True, "use intrinsics from camera_info when it arrives (else they are estimated); "
                                  "binning and ROI are applied"),
    "input_rectified": Spec(False, "the images are rectified (e.g. image_proc's image_rect): their intrinsics "
                                   "are camera_info's P, not K"),
    "external_odometry_topic": Spec("", "nav_msgs/Odometry topic of an external odometry (wheel / VIO); when set, "
                                        "its poses condition the network and fix frame and scale (pose-conditioned mode)"),
    "external_odometry_max_dt": Spec(0.05, "largest stamp difference between an image and the odometry used for it, "
                                           "seconds", range=(0.0, 1.0, 0.0)),
    # ---- outputs
    "publish_depth": Spec(True, "depth/image (32FC1 metres), depth/camera_info", read_only=False),
    "publish_confidence": Spec(True, "depth/confidence (32FC1)", read_only=False),
    "publish_points": Spec(True, "points (PointCloud2 in the optical frame)", read_only=False),
    "publish_map": Spec(True, "map/points (PointCloud2 in the world frame, transient local)", read_only=False),
    "publish_odometry": Spec(True, "odometry (nav_msgs/Odometry) and path (nav_msgs/Path)", read_only=False),
    "publish_keyframes": Spec(True, "keyframe (da3_ros/msg/Keyframe) for SLAM back-ends", read_only=False),
    "min_depth": Spec(0.1, "depth below this is invalid (NaN), metres or world units", range=(0.0, 1000.0, 0.0),
                      read_only=False),
    "max_depth": Spec(20.0, "depth above this is invalid (NaN), metres or world units", range=(0.0, 1000.0, 0.0),
                      read_only=False),
    "min_confidence": Spec(1.5, "pixels below this DA3 confidence (>= 1) are invalid in depth, points and map",
                           range=(0.0, 1000.0, 0.0), read_only=False),
    "point_decimation": Spec(4, "keep every n-th pixel in each direction for `points`", range=(1, 64, 1),
                             read_only=False),
    "map_voxel_size": Spec(0.05, "voxel edge of the world map, metres or world units", range=(0.001, 10.0, 0.0)),
    "map_max_points": Spec(500_000, "cap on world map points (the oldest are dropped first)", range=(1000, 50_000_000, 1)),
    "map_publish_period": Spec(1.0, "seconds between map/points messages", range=(0.05, 60.0, 0.0)),
    "path_max_length": Spec(10_000, "poses kept in `path`", range=(10, 1_000_000, 1)),
    "save_directory": Spec("~/.ros/da3_ros", "where ~/save writes map.ply and trajectory.tum"),
    "diagnostics_period": Spec(1.0, "seconds between /diagnostics messages", range=(0.1, 60.0, 0.0)),
}


@dataclass
class NodeConfig:
    """The parameters as typed Python values (names as in PARAMETERS)."""

    model: str
    model_variant: str
    device: str
    precision: str
    process_res: int
    pose_source: str
    reference_strategy: str
    warmup_width: int
    warmup_height: int
    window_size: int
    stride: int
    keyframe_translation: float
    keyframe_depth_ratio: float
    keyframe_rotation_deg: float
    keyframe_interval: float
    max_stamp_jump: float
    world_frame: str
    base_frame: str
    camera_frame: str
    cameras: List[str]
    rig_sync_tolerance: float
    rig_max_wait: float
    rig_scale_max_error: float
    publish_tf: bool
    use_compressed: bool
    input_reliability: str
    use_camera_info: bool
    input_rectified: bool
    external_odometry_topic: str
    external_odometry_max_dt: float
    publish_depth: bool
    publish_confidence: bool
    publish_points: bool
    publish_map: bool
    publish_odometry: bool
    publish_keyframes: bool
    min_depth: float
    max_depth: float
    min_confidence: float
    point_decimation: int
    map_voxel_size: float
    map_max_points: int
    map_publish_period: float
    path_max_length: int
    save_directory: str
    diagnostics_period: float


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.range is not None:
        lo, hi, step = spec.range
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=int(step))]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=float(step))]
    return desc


def declare_parameters(node: Node) -> NodeConfig:
    """Declare every parameter on `node` and return their values.

    Raises ValueError naming the parameter when a value is not one of its
    choices or outside its range (rclpy enforces ranges on set, not on the
    initial value from a params file)."""
    values = {}
    for name, spec in PARAMETERS.items():
        if isinstance(spec.default, list):  # rclpy cannot type an empty list: declare the type
            value = node.declare_parameter(name, Parameter.Type.STRING_ARRAY, _descriptor(name, spec)).value
            value = list(value or [])
        else:
            value = node.declare_parameter(name, spec.default, _descriptor(name, spec)).value
        check_value(name, value)
        values[name] = value
    missing = {f.name for f in fields(NodeConfig)} ^ set(values)
    assert not missing, f"PARAMETERS and NodeConfig disagree on {missing}"
    cfg = NodeConfig(**values)
    validate(cfg)
    return cfg


# ---------------------------------------------------------------- the typed mapping
# Every parameter reaches its consumer here, by name, with no defaults: a
# parameter added to NodeConfig and forgotten below fails the reach test
# (test/ros/test_params.py), and a renamed one fails to run at all.


def model_settings(cfg: NodeConfig) -> ModelSettings:
    """What builds the window model."""
    # the default stands for the checkpoint's own size (504 for DA3, 252 for the embedded model)
    process_res = None if cfg.process_res == PARAMETERS["process_res"].default else cfg.process_res
    return ModelSettings(model=cfg.model, model_variant=cfg.model_variant, device=cfg.device,
                         precision=cfg.precision, process_res=process_res, pose_source=cfg.pose_source,
                         reference_strategy=cfg.reference_strategy)


def stream_config(cfg: NodeConfig) -> StreamConfig:
    """The streaming core's configuration. 0 switches a keyframe distance test off."""
    return StreamConfig(
        window_size=cfg.window_size,
        stride=cfg.stride,
        keyframe_translation=cfg.keyframe_translation or None,
        keyframe_translation_depth_ratio=cfg.keyframe_depth_ratio or None,
        keyframe_rotation_deg=cfg.keyframe_rotation_deg,
        keyframe_max_seconds=cfg.keyframe_interval,
        min_confidence=cfg.min_confidence,
        depth_range=(cfg.min_depth, cfg.max_depth),
        map_voxel_size=cfg.map_voxel_size,
        map_max_points=cfg.map_max_points,
        map_from="keyframes" if cfg.publish_map else "none",
        trajectory_cap=cfg.path_max_length,
        max_forward_jump_s=cfg.max_stamp_jump,
        rig_cameras=tuple(cfg.cameras),
        rig_scale_max_error=cfg.rig_scale_max_error,
    )


def output_options(cfg: NodeConfig) -> OutputOptions:
    """What the message builder needs: frames, decimation, path length, switches."""
    return OutputOptions(
        world_frame=cfg.world_frame, base_frame=cfg.base_frame, point_decimation=cfg.point_decimation,
        path_max_length=cfg.path_max_length,
        switches={name: getattr(cfg, name) for name in OUTPUT_SWITCHES},
    )


def validate(cfg: NodeConfig) -> None:
    """Raise ValueError (naming the parameters) when values that are each in
    range do not fit together (min_depth >= max_depth, ...)."""
    if cfg.min_depth >= cfg.max_depth:
        raise ValueError(f"min_depth ({cfg.min_depth}) must be below max_depth ({cfg.max_depth})")
    if cfg.stride >= cfg.window_size:
        raise ValueError(f"stride ({cfg.stride}) must be below window_size ({cfg.window_size})")
    if cfg.cameras and len(cfg.cameras) * cfg.stride >= cfg.window_size:
        raise ValueError(f"window_size ({cfg.window_size}) counts views: it must exceed stride x cameras "
                         f"({cfg.stride} x {len(cfg.cameras)})")
    if bool(cfg.warmup_width) != bool(cfg.warmup_height):
        raise ValueError("warmup_width and warmup_height are set together (both 0: warm up on the first image)")
    stream_config(cfg)  # and whatever else the streaming core checks


def check_value(name: str, value: Any) -> None:
    """Raise ValueError when `value` is not of the parameter's type, one of its
    choices, or inside its range (rclpy checks ranges on set, not the initial
    value from a params file)."""
    spec = PARAMETERS[name]
    expected = type(spec.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"parameter {name}={value!r} must be a list of non-empty names")
        if len(set(value)) != len(value):
            raise ValueError(f"parameter {name}={value!r} names a camera twice")
        return
    if type(value) is not expected:
        raise ValueError(f"parameter {name}={value!r} must be a {expected.__name__}")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter {name}={value!r} is not one of {', '.join(spec.choices)}")
    if spec.range is not None and not (spec.range[0] <= value <= spec.range[1]):
        raise ValueError(f"parameter {name}={value!r} is outside [{spec.range[0]}, {spec.range[1]}]")


def default_config(**overrides) -> NodeConfig:
    """The node's configuration without a node (process-bag, tests): defaults,
    then `overrides` by name."""
    values = {name: (list(spec.default) if isinstance(spec.default, list) else spec.default)
              for name, spec in PARAMETERS.items()}
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"unknown parameters: {sorted(unknown)}")
    for name, value in overrides.items():
        check_value(name, value)
    values.update(overrides)
    cfg = NodeConfig(**values)
    validate(cfg)
    return cfg


def readme_rows() -> List[str]:
    """The README parameter table's rows, as PARAMETERS declares them
    (`python -m da3_ros.ros.params` prints them)."""
    rows = []
    for name, spec in PARAMETERS.items():
        text = spec.description + (f" ({', '.join(spec.choices)})" if spec.choices else "")
        if not spec.read_only:
            text += "; changeable at run time"
        rows.append(f"| `{name}` | `{spec.default}` | {text} |")
    return rows


if __name__ == "__main__":
    print("\n".join(readme_rows()))
