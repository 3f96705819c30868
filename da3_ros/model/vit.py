"""DINOv2 ViT/14 backbone with DA3's cross-view (alternating) attention.

Blocks [0, alt_start) attend within one view only and carry no RoPE: their output
for a frame depends on that frame alone (cacheable per frame). From `alt_start` on,
blocks use QK-norm and 2D RoPE; odd blocks attend over all views of the window
("global"), even blocks within a view ("local").

Module and parameter names follow the official checkpoints
(`backbone.pretrained.blocks.3.attn.qkv.weight`, ...).
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PATCH_SIZE, ViTConfig
from .rope import RopeCache, apply_rope


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float = 1.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: Optional[int] = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """SwiGLU FFN of ViT-g (hidden rounded to a multiple of 8 as in DINOv2)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(a) * b)


class Attention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention`.

    Optional QK-norm (LayerNorm over head_dim, eps 1e-5) before the rotary embedding.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-5) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-5) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """x (B, N, C); rope: cos/sin broadcastable to (B, heads, N, head_dim)."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale. `norm_eps` 1e-6 in the ViT."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, ffn: str = "mlp",
                 qk_norm: bool = False, norm_eps: float = 1e-6, init_values: float = 1.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.ls1 = LayerScale(dim, init_values)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        hidden = int(dim * mlp_ratio)
        self.mlp = SwiGLU(dim, hidden) if ffn == "swiglu" else Mlp(dim, hidden)
        self.ls2 = LayerScale(dim, init_values)

    def forward(self, x: torch.Tensor, rope=None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = PATCH_SIZE):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """The DA3 ViT. Call order for a window:

    `embed` -> `forward_early` (per view, cacheable) -> [reference-view reorder]
    -> `forward_late` (cross-view) -> `out_features`.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        D = cfg.embed_dim
        self.embed_dim = D
        self.alt_start = cfg.alt_start
        self.patch_embed = PatchEmbed(D)
        grid = cfg.img_size // PATCH_SIZE
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        if cfg.alt_start >= 0:
            # index 0: reference view, index 1: every other view
            self.camera_token = nn.Parameter(torch.zeros(1, 2, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, D))
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.ffn, qk_norm=0 <= cfg.alt_start <= i)
            for i in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(D, eps=1e-5)
        self.rope = RopeCache(cfg.head_dim, cfg.rope_freq) if cfg.alt_start >= 0 else None
        self._pos_cache: dict = {}

    # ------------------------------------------------------------------ tokens
    @property
    def n_early(self) -> int:
        """Number of leading per-view blocks (all of them without cross-view layers)."""
        return self.alt_start if self.alt_start >= 0 else len(self.blocks)

    def interpolate_pos_embed(self, ph: int, pw: int) -> torch.Tensor:
        """(1, 1 + ph*pw, D) fp32 position embedding for a ph x pw patch grid.

        Bicubic, no antialias, scale (n + 0.1) / 37 as DINOv2 (kept for checkpoint
        compatibility). Cached per grid in inference (weights do not change).
        """
        version = 0 if self.pos_embed.is_inference() else self.pos_embed._version  # inference tensors: no counter
        key = (ph, pw, self.pos_embed.device, version)
        hit = self._pos_cache.get(key)
        if hit is not None and not torch.is_grad_enabled():
            return hit
        pe = self.pos_embed.float()
        n = pe.shape[1] - 1
        m = int(math.sqrt(n))
        if n == ph * pw and ph == pw:
            out = pe
        else:
            patch = pe[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)
            patch = F.interpolate(patch, scale_factor=((ph + 0.1) / m, (pw + 0.1) / m),
                                  mode="bicubic", antialias=False)
            assert patch.shape[-2:] == (ph, pw)
            out = torch.cat((pe[:, :1], patch.permute(0, 2, 3, 1).reshape(1, ph * pw, -1)), 1)
        if not torch.is_grad_enabled():
            self._pos_cache = {key: out}
        return out

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) normalised -> tokens (N, 1 + P, D): [cls, patches] + pos."""
        N, _, H, W = images.shape
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(N, -1, -1).to(x.dtype), x), 1)
        return x + self.interpolate_pos_embed(H // PATCH_SIZE, W // PATCH_SIZE).to(x.dtype)

    # ------------------------------------------------------------------ blocks
    def forward_early(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-view blocks [0, n_early) on tokens (N, T, D).

        Returns (tokens after the last per-view block, selector) where selector
        (N, D) is token 0 at the INPUT of block n_early - 1: the official code picks
        the reference view from it (and reorders just before that block).
        """
        sel = x[:, 0]
        for i in range(self.n_early):
            if i == self.n_early - 1:
                sel = x[:, 0]
            x = self.blocks[i](x)
        return x, sel

    def forward_late(self, x: torch.Tensor, ph: int, pw: int,
                     cam_token: Optional[torch.Tensor] = None) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Cross-view blocks on (B, S, T, D) with the reference view already first.

        cam_token: (B, S, D) from the camera encoder, or None to use the learnt
        reference/other tokens. Returns, per out layer, (local_x, x): the output of
        the last local block and of the block itself, both (B, S, T, D).
        """
        B, S, T, D = x.shape
        cos_l, sin_l, cos_g, sin_g = self.rope.get(ph, pw, x.device)
        rope_local = (cos_l, sin_l)
        # global attention runs on S*T tokens: repeat the per-view pattern S times
        rope_global = (cos_g.repeat(S, 1), sin_g.repeat(S, 1))
        if cam_token is None:
            cam_token = torch.cat((self.camera_token[:, :1].expand(B, 1, D),
                                   self.camera_token[:, 1:].expand(B, S - 1, D)), 1)
        x = torch.cat((cam_token.to(x.dtype)[:, :, None], x[:, :, 1:]), 2)
        outs, local_x = [], x
        out_layers = set(self.cfg.out_layers)
        for i in range(self.alt_start, len(self.blocks)):
            if i % 2 == 1:
                x = self.blocks[i](x.reshape(B, S * T, D), rope_global).view(B, S, T, D)
            else:
                x = self.blocks[i](x.reshape(B * S, T, D), rope_local).view(B, S, T, D)
                local_x = x
            if i in out_layers:
                outs.append((local_x, x))
        return outs

    def forward_mono(self, x: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """All blocks per view (models without cross-view layers). x (N, T, D)."""
        outs, out_layers = [], set(self.cfg.out_layers)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in out_layers:
                outs.append((x, x))
        return outs

    def out_features(self, local_x: torch.Tensor, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(patch features (..., P, C_out) fp32, camera token (..., C_out) fp32)."""
        if self.cfg.cat_token:
            raw = torch.cat((local_x, x), -1)
            feat = torch.cat((local_x.float(), self.norm(x).float()), -1)
        else:
            raw = x
            feat = self.norm(x).float()
        return feat[..., 1:, :], raw[..., 0, :].float()


class Backbone(nn.Module):
    """Wrapper so parameter names match the checkpoints (`backbone.pretrained.*`)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.pretrained = VisionTransformer(cfg)
