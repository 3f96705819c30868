"""Checkpoints shipped inside the package, and what `model: default` means.

`da3-tiny/` (hub layout: config.json with model_name + model.safetensors with
`model.`-prefixed fp16 keys, loaded as fp32) is a small network of the DA3
architecture trained only on the project's synthetic renderer (`da3_ros.train`):
a real network with real outputs, but only for synthetic-looking scenes.

`resolve_default_model()` picks the official DA3-SMALL when it is in the
Hugging Face cache or the hub answers, and the embedded checkpoint otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple

#: directory of the embedded checkpoint (hub layout)
EMBEDDED_DIR = Path(__file__).resolve().parent / "da3-tiny"
EMBEDDED_VARIANT = "da3-tiny"
#: network input size (longest side) the embedded model was trained at
EMBEDDED_PROCESS_RES = 252
HUB_DEFAULT = "depth-anything/DA3-SMALL"
_FILES = ("config.json", "model.safetensors")


def embedded_model_path() -> Path:
    if not (EMBEDDED_DIR / "model.safetensors").is_file():
        raise FileNotFoundError(f"embedded checkpoint missing: {EMBEDDED_DIR}/model.safetensors (broken install?)")
    return EMBEDDED_DIR


def hub_cached(repo_id: str = HUB_DEFAULT) -> bool:
    """Both files of `repo_id` are in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return all(isinstance(try_to_load_from_cache(repo_id, f), str) for f in _FILES)
    except Exception:
        return False


def hub_reachable(repo_id: str = HUB_DEFAULT, timeout: float = 3.0) -> bool:
    """The hub answers for `repo_id` within `timeout` seconds (False when offline mode is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
        return True
    except Exception:
        return False


def looks_like_hub_id(source: str) -> bool:
    """`owner/name` that is no local path: what the loader fetches from the hub."""
    return ("/" in source and not source.startswith((".", "/", "~")) and ":" not in source
            and not Path(os.path.expanduser(source)).exists())


def hub_answers(timeout: float = 2.0) -> bool:
    """One request to the Hugging Face endpoint, no retries: whether this machine is
    online for the hub (any HTTP answer counts; no route, no DNS or no answer within
    `timeout` seconds does not)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
        return True
    except urllib.error.HTTPError:
        return True  # it answered
    except Exception:  # noqa: BLE001 - URLError, timeout, socket errors: offline
        return False


def hub_unavailable(repo_id: str) -> str:
    """'' when `repo_id`'s checkpoint is in the local Hugging Face cache or the hub can be
    asked for it; else why not, in one line that says where weights are looked for and
    how to provide them. Fast offline (HF_HUB_OFFLINE, or one unanswered request), and
    imports no torch: front ends call it before loading anything."""
    if hub_cached(repo_id):
        return ""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE and hub_answers():
        return ""
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else f"{constants.ENDPOINT} does not answer"
    return (f"{repo_id!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and cannot be downloaded "
            f"({why}): {how_to_provide(repo_id)}")


def how_to_provide(repo_id: str) -> str:
    return (f"fetch it where there is network (`huggingface-cli download {repo_id}`, then copy the cache or set "
            f"HF_HOME), or pass a local folder with {_FILES[0]} + {_FILES[1]}")


def resolve_default_model(check_online: bool = True, timeout: float = 3.0) -> Tuple[str, str]:
    """What `model: default` loads: (source for load_model / DA3WindowModel, description).

    The official DA3-SMALL when cached or reachable; else the embedded da3-tiny.
    (To load one of them whatever the hub says, name it: `model` is the hub id or
    the embedded checkpoint's folder, EMBEDDED_DIR.)
    """
    if hub_cached():
        return HUB_DEFAULT, f"model 'default' -> {HUB_DEFAULT} (Hugging Face cache)"
    if check_online and hub_reachable(timeout=timeout):
        return HUB_DEFAULT, f"model 'default' -> {HUB_DEFAULT} (downloaded from the hub)"
    path = embedded_model_path()
    return str(path), (f"model 'default' -> embedded {EMBEDDED_VARIANT} ({path}): {HUB_DEFAULT} is neither cached "
                       "nor reachable; this tiny network was trained on the project's synthetic renderer only "
                       f"(run it at process_res={EMBEDDED_PROCESS_RES}; real scenes need the official weights)")


def default_process_res(source: str):
    """process_res to use with a resolved default (the embedded model runs at its training size)."""
    return EMBEDDED_PROCESS_RES if Path(source) == EMBEDDED_DIR else None


__all__ = ["EMBEDDED_DIR", "EMBEDDED_VARIANT", "EMBEDDED_PROCESS_RES", "HUB_DEFAULT", "embedded_model_path",
           "hub_cached", "hub_reachable", "hub_answers", "hub_unavailable", "how_to_provide", "looks_like_hub_id",
           "resolve_default_model", "default_process_res"]
