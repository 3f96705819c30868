"""Checkpoint loading: hub id, hub-layout directory, bare .safetensors, or random.

Only safetensors are read (no pickle). Keys are checked strictly against the
network: every missing or unexpected key and every shape mismatch is an error
that names it. Two exceptions, both explicit:

* 3D-Gaussian head keys (`gs_head.*`, `gs_adapter.*`) are not used by this port;
  they are reported as ignored (logged, and listed in `model.ignored_keys`).
* The Dual-DPT aux LayerNorm is ONE module listed under four names
  (`head.scratch.output_conv2_aux.{0,1,2,3}.2.*`); a file may hold one alias
  (safetensors `save_model`) or all four (`save_file` of clones).
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch

from .config import canonical_name, get_config
from .net import DA3Model, build_model

log = logging.getLogger("da3_ros.model")

WRAPPER_PREFIX = "model."
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RANDOM_SEED = 0
_IGNORED = re.compile(r"^(.*\.)?(gs_head|gs_adapter)\.")
_AUX_LN = re.compile(r"^(.*head\.scratch\.output_conv2_aux\.)([0-3])(\.2\.(?:weight|bias))$")


class DA3LoadError(RuntimeError):
    """A checkpoint could not be found or does not match the architecture."""


# ---------------------------------------------------------------- helpers
def _meta_model(variant: str) -> DA3Model:
    with torch.device("meta"):
        return build_model(get_config(variant))


def expected_shapes(variant: str) -> Dict[str, Tuple[int, ...]]:
    """Parameter name -> shape of a variant, computed on the meta device (no memory)."""
    return {k: tuple(v.shape) for k, v in _meta_model(variant).state_dict().items()}


def _strip_prefix(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if sd and all(k.startswith(WRAPPER_PREFIX) for k in sd):
        return {k[len(WRAPPER_PREFIX):]: v for k, v in sd.items()}
    return sd


def _fill_aux_ln_aliases(sd: Dict[str, torch.Tensor], expected: Iterable[str]) -> Dict[str, torch.Tensor]:
    """Give every alias of the shared aux LayerNorm the same tensor (the last level's if present)."""
    groups: Dict[Tuple[str, str], Dict[str, str]] = {}
    for k in sd:
        m = _AUX_LN.match(k)
        if m:
            groups.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = k
    for (head, tail), present in groups.items():
        src = sd[present[max(present)]]
        for other in present.values():
            if sd[other].shape == src.shape and not torch.equal(sd[other], src):
                warnings.warn(f"aliased LayerNorm {other} differs from {present[max(present)]}; using the latter")
        for lvl in "0123":
            key = f"{head}{lvl}{tail}"
            if key in expected:
                sd[key] = src
    return sd


def check_state_dict(sd: Dict[str, torch.Tensor], variant: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Strict check of a (prefix-free) state dict. Returns (usable dict, ignored keys)."""
    exp = expected_shapes(variant)
    sd = _fill_aux_ln_aliases(dict(sd), exp.keys())
    ignored = sorted(k for k in sd if k not in exp and _IGNORED.match(k))
    unexpected = sorted(k for k in sd if k not in exp and not _IGNORED.match(k))
    missing = sorted(k for k in exp if k not in sd)
    wrong = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {exp[k]}" for k in exp if k in sd
                   and tuple(sd[k].shape) != exp[k])
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): " + ", ".join(missing[:20]))
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): " + ", ".join(unexpected[:20]))
    if wrong:
        problems.append(f"shape mismatches ({len(wrong)}): " + "; ".join(wrong[:20]))
    if problems:
        raise DA3LoadError(f"checkpoint does not match {variant}: " + " | ".join(problems))
    return {k: v for k, v in sd.items() if k in exp}, ignored


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if path.suffix != ".safetensors":
        raise DA3LoadError(f"{path}: only .safetensors checkpoints are supported (no pickle)")
    if not path.is_file():
        raise DA3LoadError(f"{path}: no such file")
    return load_file(str(path))


def _hub_files(repo_id: str) -> Path:
    """Directory holding config.json + model.safetensors of a hub repo: the local
    Hugging Face cache, else a download. Offline (HF_HUB_OFFLINE, or the hub does
    not answer one request) fails at once, without the download's retry loop."""
    from ..weights import how_to_provide, hub_unavailable

    try:
        from huggingface_hub import constants, hf_hub_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise DA3LoadError("huggingface_hub is needed to fetch hub ids; pass a local path instead") from e
    unavailable = hub_unavailable(repo_id)
    if unavailable:
        raise DA3LoadError(unavailable)
    try:
        cfg = hf_hub_download(repo_id, CONFIG_NAME)
        hf_hub_download(repo_id, WEIGHTS_NAME)
    except Exception as e:  # unknown repo, gated, a file missing, the network gone meanwhile ...
        first = (str(e).splitlines() or [""])[0][:160]
        raise DA3LoadError(f"{repo_id!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub "
                           f"did not give it ({type(e).__name__}: {first}): {how_to_provide(repo_id)}") from e
    return Path(cfg).parent


def _variant_from_dir(d: Path) -> str:
    cfg = d / CONFIG_NAME
    if not cfg.is_file():
        raise DA3LoadError(f"{d}: no {CONFIG_NAME} (expected the hub layout: {CONFIG_NAME} + {WEIGHTS_NAME})")
    name = json.loads(cfg.read_text()).get("model_name")
    if not name:
        raise DA3LoadError(f"{cfg}: no 'model_name' entry")
    return name


def _finish(model: DA3Model, device, dtype) -> DA3Model:
    model = model.to(device=device).eval()
    precision = dtype if dtype is not None else torch.float32
    model.set_precision(precision)
    return model


# ---------------------------------------------------------------- public
def load_state_dict_into(model: DA3Model, sd: Dict[str, torch.Tensor], variant: str) -> List[str]:
    """Strictly load a checkpoint dict (with or without the `model.` prefix); returns ignored keys."""
    usable, ignored = check_state_dict(_strip_prefix(sd), variant)
    model.load_state_dict({k: v.float() for k, v in usable.items()}, strict=True)
    return ignored


def load_model(source: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
               dtype: Union[torch.dtype, str, None] = torch.float32, variant: Optional[str] = None) -> DA3Model:
    """Build a DA3 network and load its weights.

    source: a hub id ("depth-anything/DA3-SMALL"), a directory in the hub layout
        (config.json with model_name + model.safetensors with `model.`-prefixed keys),
        a .safetensors file (then `variant` names the architecture), or
        "random:<variant>" (seeded random weights, for tests only).
    device: where the network lives. dtype: weights stay fp32; torch.bfloat16 /
        torch.float16 (or "bf16" | "fp16" | "auto") run the backbone under autocast
        like the official package (heads, camera and ray solver stay fp32).
    Returns the network in eval mode; `model.variant`, `model.ignored_keys`,
    `model.source` describe what was loaded.
    """
    source = str(source)
    if source.startswith("random:"):
        name = canonical_name(source.split(":", 1)[1])
        msg = (f"DA3 {name} with RANDOM weights (seed {RANDOM_SEED}): outputs are meaningless; "
               "use this only for tests and benchmarks")
        warnings.warn(msg, stacklevel=2)
        log.warning(msg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = build_model(get_config(name))
            _randomize_camera_tokens(model)
        model.variant, model.ignored_keys, model.source = name, [], source
        return _finish(model, device, dtype)

    path = Path(os.path.expanduser(source))
    if path.is_dir():
        name = canonical_name(_variant_from_dir(path))
        weights = path / WEIGHTS_NAME
    elif path.suffix == ".safetensors" or path.exists():
        if variant is None:
            cfg = path.parent / CONFIG_NAME
            if not cfg.is_file():
                raise DA3LoadError(f"{path}: pass variant='da3-small' (or another name) with a bare weights file")
            variant = _variant_from_dir(path.parent)
        name, weights = canonical_name(variant), path
    elif "/" in source and not source.startswith((".", "/", "~")):
        d = _hub_files(source)
        name = canonical_name(_variant_from_dir(d))
        weights = d / WEIGHTS_NAME
    else:
        raise DA3LoadError(f"{source!r} is neither an existing path, a hub id (owner/name) nor random:<variant>")

    sd = _read_safetensors(weights)
    with torch.device("meta"):
        model = build_model(get_config(name))
    usable, ignored = check_state_dict(_strip_prefix(sd), name)
    model.load_state_dict({k: v.float() for k, v in usable.items()}, strict=True, assign=True)
    _retie_aux_layernorm(model)
    if ignored:
        msg = f"{weights}: ignored {len(ignored)} keys of the unused 3D-Gaussian head (e.g. {ignored[0]})"
        log.warning(msg)
        warnings.warn(msg, stacklevel=2)
    model.variant, model.ignored_keys, model.source = name, ignored, source
    return _finish(model, device, dtype)


def _randomize_camera_tokens(model: DA3Model) -> None:
    """The official init draws the camera tokens from N(0, 1); torch's zeros would make
    the reference and other views identical."""
    for m in model.modules():
        if hasattr(m, "camera_token") and isinstance(m.camera_token, torch.nn.Parameter):
            with torch.no_grad():
                m.camera_token.normal_()


def _retie_aux_layernorm(model: DA3Model) -> None:
    """`assign=True` keeps the one shared LayerNorm module shared (it is one object),
    but make sure all four aux levels still point at it."""
    for m in model.modules():
        seqs = getattr(getattr(m, "scratch", None), "output_conv2_aux", None)
        if seqs is not None:
            ln = seqs[-1][2]
            for s in seqs:
                s[2] = ln


def save_hub_layout(state_dict: Dict[str, torch.Tensor], directory: Union[str, os.PathLike], model_name: str,
                    one_alias: bool = False) -> Path:
    """Write `state_dict` (official key names, no prefix) as a hub-layout directory.

    one_alias: keep only one name of each aliased tensor (like safetensors' save_model).
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / CONFIG_NAME).write_text(json.dumps({"model_name": model_name}))
    out, seen = {}, {}
    for k, v in state_dict.items():
        ptr = (v.data_ptr(), tuple(v.shape), v.dtype)
        if one_alias and ptr in seen and v.numel() > 0:
            continue
        seen[ptr] = k
        out[WRAPPER_PREFIX + k] = v.detach().to("cpu").clone().contiguous()
    save_file(out, str(d / WEIGHTS_NAME))
    return d
