"""Architecture registry for the Depth Anything 3 variants.

One small frozen dataclass per sub-network; `VARIANTS` maps the official
`model_name` (as written in the hub's `config.json`) to its `DA3Config`.
Hub ids and the `-1.1` re-trained checkpoints resolve to the same architectures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

PATCH_SIZE = 14


@dataclass(frozen=True)
class ViTConfig:
    """DINOv2 ViT/14 backbone. `alt_start` -1 disables the cross-view layers."""

    embed_dim: int
    depth: int
    num_heads: int
    out_layers: Tuple[int, ...]
    alt_start: int = -1  # first block with QK-norm, RoPE and alternating attention
    ffn: str = "mlp"  # "mlp" | "swiglu"
    cat_token: bool = True  # features = cat(last local output, normed output)
    img_size: int = 518  # size the position embedding was trained at
    mlp_ratio: float = 4.0
    rope_freq: float = 100.0

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def out_dim(self) -> int:
        return self.embed_dim * (2 if self.cat_token else 1)


@dataclass(frozen=True)
class HeadConfig:
    """DPT-style dense head. kind "dualdpt" (depth + rays) or "dpt" (depth + sky)."""

    kind: str
    dim_in: int
    features: int
    out_channels: Tuple[int, int, int, int]
    output_dim: int = 2


@dataclass(frozen=True)
class DA3Config:
    """One network: backbone, dense head, optional camera encoder/decoder."""

    name: str
    vit: ViTConfig
    head: HeadConfig
    has_camera: bool = False  # camera encoder (pose conditioning) + decoder
    has_gs_head: bool = False  # 3DGS head present in checkpoints (never built here)
    licence: str = "Apache-2.0"

    @property
    def any_view(self) -> bool:
        return self.vit.alt_start >= 0

    @property
    def metric(self) -> bool:
        return self.head.kind == "dpt" and self.name.startswith("da3metric")


@dataclass(frozen=True)
class NestedConfig:
    """Any-view network + metric network aligned by one least-squares scale."""

    name: str
    anyview: DA3Config
    metric: DA3Config
    licence: str = "CC BY-NC 4.0"


def _anyview(name, dim, depth, heads, out_layers, alt_start, head_feat, head_out, ffn="mlp",
             gs=False, licence="Apache-2.0") -> DA3Config:
    return DA3Config(
        name=name,
        vit=ViTConfig(dim, depth, heads, tuple(out_layers), alt_start=alt_start, ffn=ffn),
        head=HeadConfig("dualdpt", 2 * dim, head_feat, tuple(head_out), output_dim=2),
        has_camera=True,
        has_gs_head=gs,
        licence=licence,
    )


def _monocular(name: str) -> DA3Config:
    # metric and mono share one architecture: ViT-L without cross-view layers, DPT + sky head
    return DA3Config(
        name=name,
        vit=ViTConfig(1024, 24, 16, (4, 11, 17, 23), alt_start=-1, cat_token=False),
        head=HeadConfig("dpt", 1024, 256, (256, 512, 1024, 1024), output_dim=1),
    )


_SMALL = _anyview("da3-small", 384, 12, 6, (5, 7, 9, 11), 4, 64, (48, 96, 192, 384))
_BASE = _anyview("da3-base", 768, 12, 12, (5, 7, 9, 11), 4, 128, (96, 192, 384, 768))
_LARGE = _anyview("da3-large", 1024, 24, 16, (11, 15, 19, 23), 8, 256, (256, 512, 1024, 1024),
                  licence="CC BY-NC 4.0")
_GIANT = _anyview("da3-giant", 1536, 40, 24, (19, 27, 33, 39), 13, 256, (256, 512, 1024, 1024),
                  ffn="swiglu", gs=True, licence="CC BY-NC 4.0")
# not an official checkpoint: the embedded default trained on the synthetic renderer
# (da3_ros/train, weights in da3_ros/weights/da3-tiny); same code path as da3-small
_TINY = _anyview("da3-tiny", 128, 12, 2, (5, 7, 9, 11), 4, 48, (32, 64, 96, 128))
_METRIC = _monocular("da3metric-large")
_MONO = _monocular("da3mono-large")
_NESTED = NestedConfig("da3nested-giant-large", anyview=_GIANT, metric=_METRIC)

VARIANTS: Dict[str, object] = {
    c.name: c for c in (_TINY, _SMALL, _BASE, _LARGE, _GIANT, _METRIC, _MONO, _NESTED)
}


def canonical_name(name: str) -> str:
    """Map a variant name, `-1.1` name or hub id to the registry key.

    >>> canonical_name("depth-anything/DA3NESTED-GIANT-LARGE-1.1")
    'da3nested-giant-large'
    """
    key = name.strip().split("/")[-1].lower()
    if key.endswith("-1.1"):
        key = key[: -len("-1.1")]
    if key not in VARIANTS:
        raise KeyError(
            f"unknown DA3 variant {name!r}; known: {', '.join(sorted(VARIANTS))} "
            "(hub ids like depth-anything/DA3-SMALL and -1.1 names are accepted)"
        )
    return key


def get_config(name: str):
    """The `DA3Config` (or `NestedConfig`) of a variant name / hub id."""
    return VARIANTS[canonical_name(name)]


__all__ = [
    "PATCH_SIZE", "ViTConfig", "HeadConfig", "DA3Config", "NestedConfig", "VARIANTS",
    "canonical_name", "get_config",
]
