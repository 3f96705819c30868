"""Every setting of da3_ros, declared once: name, type, default, range, meaning.

The node's parameters (with their descriptors, ros/params.py), process-bag's
`-p name:=value`, run-offline's flags (`--window-size` for `window_size`), the
streaming core's `StreamConfig`, the model's `ModelSettings` and the README's
parameter table all come from `SETTINGS`. Plain data, no ROS and no torch, so
every layer above the stream may read it. Units are in the names or the
descriptions (metres, seconds, pixels, degrees).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, make_dataclass
from typing import Any, Dict, List, Optional, Tuple

#: where a setting applies: the network, the streaming core, or only the live node (ROS I/O)
MODEL, STREAM, NODE = "model", "stream", "node"


@dataclass(frozen=True)
class Setting:
    default: Any
    description: str
    range: Optional[Tuple[float, float, float]] = None  # (from, to, step); step 0 = continuous
    choices: Tuple[str, ...] = ()
    #: changeable while streaming (node: `ros2 param set`); else fixed at start
    runtime: bool = False
    #: MODEL / STREAM settings are flags of run-offline too; NODE ones only concern ROS I/O
    scope: str = STREAM

    @property
    def type(self) -> type:
        return type(self.default)


SETTINGS: Dict[str, Setting] = {
    # ---- model
    "model": Setting("default",
                     "DA3 checkpoint: default (depth-anything/DA3-SMALL if cached or reachable, else the embedded "
                     "synthetic-trained da3-tiny), a hub id, a local hub-layout directory, a .safetensors file "
                     "(with model_variant), or random:<variant> (random weights, tests only)", scope=MODEL),
    "model_variant": Setting("", "variant name when `model` is a bare .safetensors file (e.g. da3-small)", scope=MODEL),
    "device": Setting("auto", "torch device: auto (cuda if available, else cpu), cpu, cuda, cuda:1, ...", scope=MODEL),
    "precision": Setting("auto", "network precision: auto (bf16 on GPUs that support it, fp16 on older GPUs, fp32 on "
                                 "CPU)", choices=("auto", "fp32", "bf16", "fp16"), scope=MODEL),
    "process_res": Setting(504, "longest image side fed to the network, pixels (rounded to a multiple of 14); the "
                                "default 504 is each checkpoint's own size (the embedded da3-tiny: 252, and it "
                                "refuses other values)", range=(56, 1512, 14), scope=MODEL),
    "pose_source": Setting("ray", "camera poses from the ray head (more accurate) or the camera head (cheaper)",
                           choices=("ray", "camera"), scope=MODEL),
    "ray_map": Setting("quarter", "ray map the pose solver fits (pose_source ray): full (the official 8x patch grid), "
                                  "half, or quarter (at most 2x the patch grid: about as accurate, much cheaper)",
                       choices=("full", "half", "quarter"), scope=MODEL),
    "reference_strategy": Setting("saddle_balanced", "reference view of a window (DA3's strategies)",
                                  choices=("saddle_balanced", "saddle_sim_range", "first", "middle"), scope=MODEL),
    "compile": Setting("auto", "network fast path: auto (inductor on CUDA with triton, else CUDA graphs; off on the "
                               "CPU), off (plain eager), staged (fixed-shape stages), graphs (+ CUDA graphs), inductor "
                               "(+ torch.compile of the ViT blocks)",
                       choices=("auto", "off", "staged", "graphs", "inductor"), scope=MODEL),
    "attention_kernel": Setting("auto", "fast path (CUDA): the attention (SDPA) backend of the ViT blocks; auto: the "
                                        "fastest that matches PyTorch's default, timed per block at warm-up",
                                choices=("auto", "flash", "cudnn", "efficient", "math", "default"), scope=MODEL),
    "head_channels_last": Setting(True, "fast path (CUDA): the heads' convolutions in channels-last layout",
                                  scope=MODEL),
    "compile_dynamic": Setting(False, "compile inductor: dynamic shapes from the first window (one graph for every "
                                      "size); false: static for the deployed window, dynamic for others", scope=MODEL),
    "inductor_mode": Setting("", "compile inductor: torch.compile mode, e.g. max-autotune-no-cudagraphs; empty: "
                                 "torch's default", scope=MODEL),
    "warmup_width": Setting(0, "camera image width, pixels, to compile/capture the network for at start-up; "
                               "0: warm up when the first image arrives", range=(0, 8192, 1), scope=NODE),
    "warmup_height": Setting(0, "camera image height, pixels, for the start-up warm-up (with warmup_width)",
                             range=(0, 8192, 1), scope=NODE),
    # ---- window and scheduling
    "window_size": Setting(8, "frames in the sliding window (keyframes plus the newest frame)", range=(2, 64, 1)),
    "stride": Setting(1, "new frames per inference: 1 answers every frame the worker takes", range=(1, 32, 1)),
    "keyframe_translation": Setting(0.0, "a frame becomes a keyframe after this much camera motion, world units "
                                         "(metres when metric); 0: off", range=(0.0, 100.0, 0.0), runtime=True),
    "keyframe_depth_ratio": Setting(0.05, "... or after moving this fraction of the scene's median depth "
                                          "(scale-free: works at a relative model's arbitrary scale); 0: off",
                                    range=(0.0, 10.0, 0.0), runtime=True),
    "keyframe_rotation_deg": Setting(5.0, "... or after this much camera rotation, degrees", range=(0.0, 180.0, 0.0),
                                     runtime=True),
    "keyframe_interval": Setting(1.0, "... or after this long without a keyframe, seconds", range=(0.0, 3600.0, 0.0),
                                 runtime=True),
    "max_stamp_jump": Setting(10.0, "a frame stamped more than this many seconds after the last one (or any time "
                                    "before it) is held until the next frame says which timeline is real: one bad "
                                    "stamp is dropped, a real restart of time (looping bag) resets the world",
                              range=(0.001, 1e6, 0.0)),
    # ---- frames (REP 103 / 105)
    "world_frame": Setting("odom", "fixed frame of poses, path and map (REP 105: odom)", scope=NODE),
    "base_frame": Setting("", "if set, TF and odometry are published for this frame (e.g. base_link), using the fixed "
                              "base -> camera transform from /tf_static; the world origin is then this frame at start"),
    "camera_frame": Setting("", "optical frame id of the camera; empty: the image header's frame_id (single camera)",
                            scope=NODE),
    # ---- multi-camera rigs
    "cameras": Setting([], "camera names of a rig, e.g. [front, left]: one node subscribes to <camera>/image and "
                           "<camera>/camera_info of each and publishes each camera's outputs under <camera>/; "
                           "empty: one camera on image and camera_info"),
    "rig_sync_tolerance": Setting(0.005, "images of a rig whose stamps lie within this many seconds form one rig "
                                         "frame", range=(0.0, 1.0, 0.0)),
    "rig_max_wait": Setting(0.1, "a rig frame waits at most this long (seconds of stamp time) for a late camera, "
                                 "then goes without it", range=(0.001, 10.0, 0.0)),
    "rig_scale_max_error": Setting(0.01, "with the rig's extrinsics in /tf_static (base_frame -> each camera), depth "
                                         "and poses turn metric once the scale from the baselines or the image overlap is "
                                         "this precise (relative standard error)", range=(0.0001, 0.5, 0.0)),
    "publish_tf": Setting(True, "publish the world -> camera (or world -> base_frame) transform", runtime=True,
                          scope=NODE),
    # ---- inputs
    "use_compressed": Setting(False, "subscribe to image/compressed (JPEG/PNG) instead of image", scope=NODE),
    "input_reliability": Setting("best_effort", "QoS reliability of the image and camera_info subscriptions "
                                                "(camera drivers publish best effort)",
                                 choices=("best_effort", "reliable"), scope=NODE),
    "use_camera_info": Setting(True, "use intrinsics from camera_info when it arrives (else they are estimated); "
                                     "binning and ROI are applied"),
    "input_rectified": Setting(False, "the images are rectified (e.g. image_proc's image_rect): their intrinsics "
                                      "are camera_info's P, not K"),
    "external_odometry_topic": Setting("", "nav_msgs/Odometry topic of an external odometry (wheel / VIO); when set, "
                                           "its poses condition the network and fix frame and scale "
                                           "(pose-conditioned mode)", scope=NODE),
    "external_odometry_max_dt": Setting(0.05, "largest stamp difference between an image and the odometry used for "
                                              "it, seconds", range=(0.0, 1.0, 0.0), scope=NODE),
    # ---- outputs
    "publish_depth": Setting(True, "depth/image (32FC1 metres), depth/camera_info", runtime=True, scope=NODE),
    "publish_confidence": Setting(True, "depth/confidence (32FC1)", runtime=True, scope=NODE),
    "publish_points": Setting(True, "points (PointCloud2 in the optical frame)", runtime=True, scope=NODE),
    "publish_map": Setting(True, "map/points (PointCloud2 in the world frame, transient local)", runtime=True,
                           scope=NODE),
    "publish_odometry": Setting(True, "odometry (nav_msgs/Odometry) and path (nav_msgs/Path)", runtime=True,
                                scope=NODE),
    "publish_keyframes": Setting(True, "keyframe (da3_ros/msg/Keyframe) for SLAM back-ends", runtime=True, scope=NODE),
    "min_depth": Setting(0.1, "depth below this is invalid (NaN), metres or world units", range=(0.0, 1000.0, 0.0),
                         runtime=True),
    "max_depth": Setting(20.0, "depth above this is invalid (NaN), metres or world units", range=(0.0, 1000.0, 0.0),
                         runtime=True),
    "min_confidence": Setting(1.5, "pixels below this DA3 confidence (>= 1) are invalid in depth, points and map",
                              range=(0.0, 1000.0, 0.0), runtime=True),
    "point_decimation": Setting(4, "keep every n-th pixel in each direction for `points`", range=(1, 64, 1),
                                runtime=True, scope=NODE),
    "map_voxel_size": Setting(0.05, "voxel edge of the world map, metres or world units", range=(0.001, 10.0, 0.0)),
    "map_max_points": Setting(500_000, "cap on world map points (the oldest are dropped first)",
                              range=(1000, 50_000_000, 1)),
    "map_publish_period": Setting(1.0, "seconds between map/points messages", range=(0.05, 60.0, 0.0), scope=NODE),
    "path_max_length": Setting(10_000, "poses kept in `path` (and the trajectory ~/save writes)",
                               range=(10, 1_000_000, 1)),
    "path_publish_period": Setting(1.0, "seconds between `path` messages (the whole path, up to `path_max_length` "
                                   "poses, so not with every frame; process-bag counts bag time)",
                                   range=(0.05, 60.0, 0.0), scope=NODE),
    "save_directory": Setting("~/.ros/da3_ros", "where ~/save writes map.ply and trajectory.tum", scope=NODE),
    "diagnostics_period": Setting(1.0, "seconds between /diagnostics messages", range=(0.1, 60.0, 0.0), scope=NODE),
}

#: the settings as typed values, one field per SETTINGS entry (the node's `cfg`)
Settings = make_dataclass("Settings", [(name, s.type) for name, s in SETTINGS.items()])
Settings.__doc__ = "Every setting (SETTINGS) as a typed value, by name."


def default_value(name: str) -> Any:
    value = SETTINGS[name].default
    return list(value) if isinstance(value, list) else value


def check_value(name: str, value: Any) -> None:
    """Raise ValueError when `value` is not of the setting's type, one of its
    choices, or inside its range."""
    spec = SETTINGS[name]
    expected = spec.type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is list:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"parameter {name}={value!r} must be a list of non-empty names")
        twice = sorted({v for v in value if list(value).count(v) > 1})
        if twice:
            raise ValueError(f"parameter {name}={list(value)!r} names {', '.join(map(repr, twice))} twice: "
                             "each camera once, e.g. left,right")
        return
    if type(value) is not expected:
        raise ValueError(f"parameter {name}={value!r} must be {_accepted(spec)}")
    if spec.choices and value not in spec.choices:
        raise ValueError(f"parameter {name}={value!r} is not one of {', '.join(spec.choices)}")
    if spec.range is not None and not (spec.range[0] <= value <= spec.range[1]):
        raise ValueError(f"parameter {name}={value!r} is not accepted: {_accepted(spec)}")


def _accepted(spec: Setting) -> str:
    """What a setting accepts, in words ("a whole number from 56 to 1512")."""
    kind = {bool: "true or false", int: "a whole number", float: "a number", str: "a text",
            list: "a list of names"}[spec.type]
    if spec.range is not None:
        lo, hi = spec.range[:2]
        kind += f" from {lo:g} to {hi:g}"
    return kind


def validate(cfg: Settings) -> None:
    """Raise ValueError (naming the settings) when values that are each in range
    do not fit together (min_depth >= max_depth, ...)."""
    if cfg.min_depth >= cfg.max_depth:
        raise ValueError(f"min_depth ({cfg.min_depth}) must be below max_depth ({cfg.max_depth})")
    check_window(cfg.window_size, cfg.stride, len(cfg.cameras) or 1)
    if bool(cfg.warmup_width) != bool(cfg.warmup_height):
        raise ValueError("warmup_width and warmup_height are set together (both 0: warm up on the first image)")


def check_window(window_size: int, stride: int, views_per_frame: int = 1) -> None:
    """The one window rule: each window shares at least one keyframe view with
    the last, so window_size (views) must exceed stride x cameras."""
    if window_size < 2:
        raise ValueError(f"window_size ({window_size}) must be at least 2")
    if stride < 1 or stride * views_per_frame >= window_size:
        what = f"stride x cameras ({stride} x {views_per_frame})" if views_per_frame > 1 else f"stride ({stride})"
        raise ValueError(f"window_size ({window_size} views) must exceed {what} so windows share a keyframe")


def settings(**overrides) -> Settings:
    """The defaults, then `overrides` by name; each checked, then together.
    Raises ValueError naming what is wrong."""
    unknown = set(overrides) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown parameters: {sorted(unknown)}; known: {', '.join(SETTINGS)}")
    values = {name: default_value(name) for name in SETTINGS}
    for name, value in overrides.items():
        check_value(name, value)
        values[name] = float(value) if SETTINGS[name].type is float else value
    cfg = Settings(**values)
    validate(cfg)
    return cfg


def parse_value(name: str, text: str) -> Any:
    """A setting's value from command-line text ("8", "true", "[front, left]"),
    checked. Raises ValueError naming the setting and what it accepts."""
    spec = SETTINGS.get(name)
    if spec is None:
        raise ValueError(f"unknown parameter {name!r}; known: {', '.join(sorted(SETTINGS))}")
    try:
        value = _typed(text, spec.default)
    except ValueError:
        raise ValueError(f"parameter {name}: {text!r} is not accepted: {_accepted(spec)}") from None
    check_value(name, value)
    return value


def _typed(text: str, default: Any) -> Any:
    if isinstance(default, list):  # "[front, left]" or "front,left"
        names = text.strip().strip("[]")
        return [n.strip().strip("'\"") for n in names.split(",") if n.strip()]
    if isinstance(default, bool):  # before int: bool is an int
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(text)
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def offline_names() -> List[str]:
    """The settings a front end without ROS I/O takes (run-offline's flags)."""
    return [name for name, s in SETTINGS.items() if s.scope != NODE]


def flag(name: str) -> str:
    """run-offline's flag of a setting: `window_size` -> `--window-size`."""
    return "--" + name.replace("_", "-")


def readme_rows() -> List[str]:
    """The README parameter table's rows, as SETTINGS declares them
    (`python -m da3_ros.stream.settings` prints them)."""
    rows = []
    for name, spec in SETTINGS.items():
        text = spec.description + (f" ({', '.join(spec.choices)})" if spec.choices else "")
        if spec.runtime:
            text += "; changeable at run time"
        if spec.scope == NODE:
            text += "; node only"
        rows.append(f"| `{name}` | `{spec.default}` | {text} |")
    return rows


assert {f.name for f in fields(Settings)} == set(SETTINGS)

if __name__ == "__main__":
    print("\n".join(readme_rows()))
