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


#: process_res a user may ask for (longest side fed to the network, pixels; rounded
#: to a multiple of 14): four patches to 108 patches (the setting's range)
PROCESS_RES_RANGE = (int(SETTINGS["process_res"].range[0]), int(SETTINGS["process_res"].range[1]))


class ModelUnavailable(RuntimeError):
    """The DA3 network cannot be imported or loaded in this build."""


class SettingRefused(ValueError):
    """A model setting the chosen model cannot honour (said, never ignored)."""


@dataclass(frozen=True)
class ModelSettings:
    """How to build the window model: the MODEL settings of `stream.settings`
    (same names, defaults and meanings; declared there), plus the noisy
    oracle's seed."""

    model: str = SETTINGS["model"].default
    model_variant: str = SETTINGS["model_variant"].default
    device: str = SETTINGS["device"].default
    precision: str = SETTINGS["precision"].default
    #: longest image side fed to the network, pixels; None: the checkpoint's own (DA3: 504,
    #: the embedded da3-tiny: 252, the only size it runs at); refused by models without one.
    #: The setting's default (504) stands for None (`model_settings`).
    process_res: Optional[int] = None
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
    """The model's part of the settings (`stream.settings.Settings`), by name. The
    default process_res stands for the checkpoint's own size (504 for DA3, 252 for
    the embedded model)."""
    values = {f.name: getattr(cfg, f.name) for f in fields(ModelSettings) if f.name != "seed"}
    if values["process_res"] == SETTINGS["process_res"].default:
        values["process_res"] = None
    return ModelSettings(**values)


def make_window_model(settings: ModelSettings) -> WindowModel:
    """Build the model `settings.model` names. Raises ModelUnavailable when the
    network layer cannot be imported, and the loader's own error otherwise."""
    spec = settings.model
    kind, sep, rest = spec.partition(":")
    process_res = settings.process_res
    if process_res is not None and not PROCESS_RES_RANGE[0] <= process_res <= PROCESS_RES_RANGE[1]:
        raise SettingRefused(f"process_res {process_res} is out of range: {PROCESS_RES_RANGE[0]} to "
                             f"{PROCESS_RES_RANGE[1]} pixels (the network input's longest side)")
    if sep and kind in ORACLE_KINDS:  # (answers at the input's resolution: process_res is not its setting)
        from ..synthetic.oracle import NoisyOracleModel, OracleModel

        if kind == "noisy-oracle":
            return NoisyOracleModel(rest, seed=settings.seed)
        return OracleModel(rest, metric=(kind == "oracle-metric"), seed=settings.seed)
    # what a user can get wrong is answered before torch is imported (seconds on a small machine)
    if spec == "default":  # no download needed: the embedded checkpoint when the hub is out of reach
        from ..weights import EMBEDDED_PROCESS_RES, default_process_res, resolve_default_model

        spec, desc = resolve_default_model()
        own = default_process_res(spec)
        if own is not None and process_res not in (None, own):
            # trained at one size only: another would run, but as a different (untested) network
            raise SettingRefused(f"process_res {process_res}: model 'default' resolved to the embedded da3-tiny "
                                 f"(no DA3 weights cached or reachable), which runs only at its training size "
                                 f"{EMBEDDED_PROCESS_RES}; leave process_res unset, or load DA3 weights "
                                 "(a hub id or a local folder)")
        process_res = own or process_res
        logging.getLogger("da3_ros").info(desc)
        print(desc, file=sys.stderr, flush=True)
    else:
        from ..weights import hub_unavailable, looks_like_hub_id

        unavailable = hub_unavailable(spec) if looks_like_hub_id(spec) else ""
        if unavailable:
            raise ModelUnavailable(unavailable)
    try:
        from .da3_model import DA3WindowModel
    except ImportError as exc:  # the network layer is missing or broken in this build
        raise ModelUnavailable(f"DA3 network unavailable (da3_ros.model: {exc}); use oracle:<dir> for synthetic data") from exc
    device = settings.device
    if device == "auto":  # the node's and CLI's default: the GPU when there is one
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict = dict(device=device, precision=settings.precision, pose_source=settings.pose_source,
                        reference_strategy=settings.reference_strategy, variant=settings.model_variant or None,
                        ray_map=settings.ray_map, compile=settings.compile)
    if settings.compile != "off":  # the fast path's kernel switches (imported only with the network)
        from ..model.fast import Kernels

        kwargs["kernels"] = Kernels(settings.attention_kernel, settings.head_channels_last, settings.compile_dynamic,
                                    settings.inductor_mode)
    if process_res:
        kwargs["process_res"] = int(process_res)
    return DA3WindowModel(spec, **kwargs)
