"""The one place a `WindowModel` is built from a user-facing model spec (node
parameter `model`, `--model` of the command-line tools).

Model specs:
  oracle:<dir>         exact oracle on a synthetic sequence folder (write_sequence)
  oracle-metric:<dir>  the same, answering in metres
  noisy-oracle:<dir>   the noisy oracle (DA3-like errors, seeded)
  default              depth-anything/DA3-SMALL when cached or reachable, else the
                       embedded da3-tiny (da3_ros.weights; run at its process_res 252)
  anything else        a DA3 checkpoint for `DA3WindowModel` (hub id, directory,
                       .safetensors, random:<variant>), imported only then
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, fields
from typing import Optional

from ..stream.interface import WindowModel
from ..stream.settings import SETTINGS

ORACLE_KINDS = ("oracle", "oracle-metric", "noisy-oracle")


class ModelUnavailable(RuntimeError):
    """The DA3 network cannot be imported or loaded in this build."""


@dataclass(frozen=True)
class ModelSettings:
    """How to build the window model: the MODEL settings of `stream.settings`
    (same names, defaults and meanings; declared there), plus the noisy
    oracle's seed."""

    model: str = SETTINGS["model"].default
    model_variant: str = SETTINGS["model_variant"].default
    device: str = SETTINGS["device"].default
    precision: str = SETTINGS["precision"].default
    #: None: the checkpoint's own default
    process_res: Optional[int] = SETTINGS["process_res"].default
    pose_source: str = SETTINGS["pose_source"].default
    ray_map: str = SETTINGS["ray_map"].default
    reference_strategy: str = SETTINGS["reference_strategy"].default
    compile: str = SETTINGS["compile"].default
    attention_kernel: str = SETTINGS["attention_kernel"].default
    head_channels_last: bool = SETTINGS["head_channels_last"].default
    compile_dynamic: bool = SETTINGS["compile_dynamic"].default
    inductor_mode: str = SETTINGS["inductor_mode"].default
    #: seed of the noisy oracle
    seed: int = 0


def model_settings(cfg) -> ModelSettings:
    """The model's part of the settings (`stream.settings.Settings`), by name."""
    return ModelSettings(**{f.name: getattr(cfg, f.name) for f in fields(ModelSettings) if f.name != "seed"})


def make_window_model(settings: ModelSettings) -> WindowModel:
    """Build the model `settings.model` names. Raises ModelUnavailable when the
    network layer cannot be imported, and the loader's own error otherwise."""
    spec = settings.model
    kind, sep, rest = spec.partition(":")
    if sep and kind in ORACLE_KINDS:
        from ..synthetic.oracle import NoisyOracleModel, OracleModel

        if kind == "noisy-oracle":
            return NoisyOracleModel(rest, seed=settings.seed)
        return OracleModel(rest, metric=(kind == "oracle-metric"), seed=settings.seed)
    try:
        from .da3_model import DA3WindowModel
    except ImportError as exc:  # the network layer is missing or broken in this build
        raise ModelUnavailable(f"DA3 network unavailable (da3_ros.model: {exc}); use oracle:<dir> for synthetic data") from exc
    process_res = settings.process_res
    if spec == "default":  # no download needed: the embedded checkpoint when the hub is out of reach
        from ..weights import default_process_res, resolve_default_model

        spec, desc = resolve_default_model()
        process_res = default_process_res(spec) or process_res
        logging.getLogger("da3_ros").info(desc)
        print(desc, file=sys.stderr, flush=True)
    device = settings.device
    if device == "auto":  # the node's and CLI's default: the GPU when there is one
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict = dict(device=device, precision=settings.precision, pose_from=settings.pose_source,
                        ref_view_strategy=settings.reference_strategy, variant=settings.model_variant or None,
                        ray_map=settings.ray_map, compile=settings.compile)
    if settings.compile != "off":  # the fast path's kernel switches (imported only with the network)
        from ..model.fast import Kernels

        kwargs["kernels"] = Kernels(settings.attention_kernel, settings.head_channels_last, settings.compile_dynamic,
                                    settings.inductor_mode)
    if process_res:
        kwargs["process_res"] = int(process_res)
    return DA3WindowModel(spec, **kwargs)
