"""Building models and streamers from user-facing settings (CLI, node params).

Model specs:
  oracle:<dir>         exact oracle on a synthetic sequence folder (write_sequence)
  oracle-metric:<dir>  the same, answering in metres
  noisy-oracle:<dir>   the noisy oracle (DA3-like errors, seeded)
  default              depth-anything/DA3-SMALL when cached or reachable, else the
                       embedded da3-tiny (da3_ros.weights; run at its process_res 252)
  anything else        handed to da3_ros.stream.da3_model.DA3WindowModel (hub id, directory,
                       .safetensors, random:<variant>), imported only then
"""

from __future__ import annotations

from typing import Any, Optional

from .config import StreamConfig
from .interface import WindowModel
from .pipeline import Streamer


class ModelUnavailable(RuntimeError):
    """The DA3 network cannot be imported or loaded in this build."""


def make_model(
    spec: str,
    variant: Optional[str] = None,
    device: str = "cpu",
    precision: str = "auto",
    process_res: Optional[int] = None,
    pose_from: str = "ray",
    ref_view_strategy: str = "saddle_balanced",
    seed: int = 0,
) -> WindowModel:
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("oracle", "oracle-metric", "noisy-oracle"):
        from ..synthetic.oracle import NoisyOracleModel, OracleModel

        if kind == "noisy-oracle":
            return NoisyOracleModel(rest, seed=seed)
        return OracleModel(rest, metric=(kind == "oracle-metric"), seed=seed)
    try:
        from .da3_model import DA3WindowModel
    except ImportError as exc:  # the network layer is missing or broken in this build
        raise ModelUnavailable(f"DA3 network unavailable (da3_ros.model: {exc}); use oracle:<dir> for synthetic data") from exc
    if spec == "default":  # no download needed: the embedded checkpoint when the hub is out of reach
        import logging
        import sys

        from ..weights import default_process_res, resolve_default_model

        spec, desc = resolve_default_model()
        process_res = default_process_res(spec) or process_res
        logging.getLogger("da3_ros").info(desc)
        print(desc, file=sys.stderr, flush=True)
    if device == "auto":  # the node's and CLI's default: the GPU when there is one
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict = dict(device=device, precision=precision, pose_from=pose_from, ref_view_strategy=ref_view_strategy, variant=variant or None)
    if process_res:
        kwargs["process_res"] = int(process_res)
    return DA3WindowModel(spec, **kwargs)


def stream_config_from(settings: Any, **overrides) -> StreamConfig:
    """A StreamConfig from a StreamConfig, or from any object with the node's
    parameter names (window_size, stride, keyframe_translation,
    keyframe_rotation_deg, keyframe_interval, min_confidence, min_depth,
    max_depth, map_voxel_size, map_max_points); missing ones keep defaults."""
    if isinstance(settings, StreamConfig):
        cfg = settings
        values = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    else:
        d = StreamConfig()
        g = lambda name, default: getattr(settings, name, default)  # noqa: E731
        kt = g("keyframe_translation", d.keyframe_translation)
        values = dict(
            window_size=int(g("window_size", d.window_size)),
            stride=int(g("stride", d.stride)),
            keyframe_translation=float(kt) if kt else None,
            keyframe_rotation_deg=float(g("keyframe_rotation_deg", d.keyframe_rotation_deg)),
            keyframe_max_seconds=float(g("keyframe_interval", g("keyframe_max_seconds", d.keyframe_max_seconds))),
            # the model picks its own reference view (its reference_strategy)
            ref_strategy=g("ref_strategy", "model"),
            min_confidence=float(g("min_confidence", d.min_confidence)),
            depth_range=(float(g("min_depth", d.depth_range[0])), float(g("max_depth", d.depth_range[1]))),
            map_voxel_size=float(g("map_voxel_size", d.map_voxel_size)),
            map_max_points=int(g("map_max_points", d.map_max_points)),
            trajectory_cap=max(int(g("trajectory_cap", d.trajectory_cap)), int(g("path_max_length", 0) or 0)),
        )
    values.update(overrides)
    return StreamConfig(**values)


def make_streamer(model: WindowModel, settings: Any = None, **overrides) -> Streamer:
    return Streamer(model, stream_config_from(settings if settings is not None else StreamConfig(), **overrides))
