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
from typing import List, Optional, Sequence, Tuple

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


try:  # torch >= 2.3 (older torch: `Attention.kernel` is ignored, PyTorch chooses)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _SDPA_BACKENDS = {k: getattr(SDPBackend, v) for k, v in (
        ("flash", "FLASH_ATTENTION"), ("cudnn", "CUDNN_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"),
        ("math", "MATH")) if hasattr(SDPBackend, v)}
except ImportError:  # pragma: no cover
    sdpa_kernel, _SDPA_BACKENDS = None, {}

#: backends `Attention.kernel` can pin (None: PyTorch chooses per call)
ATTENTION_KERNELS = tuple(_SDPA_BACKENDS)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: Optional[str] = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)) v by `F.scaled_dot_product_attention`; `kernel` (one of
    `ATTENTION_KERNELS`) pins its backend, None lets PyTorch choose."""
    if kernel is None or sdpa_kernel is None:
        return F.scaled_dot_product_attention(q, k, v)
    with sdpa_kernel([_SDPA_BACKENDS[kernel]]):
        return F.scaled_dot_product_attention(q, k, v)


class Attention(nn.Module):
    """Multi-head self-attention, the one attention of the network (ViT blocks and the
    camera encoder's trunk).

    Optional QK-norm (LayerNorm over head_dim, eps 1e-5) before the rotary embedding.
    `kernel` is the one switch of the attention kernel (see `attention`); the fast path
    sets it per block after timing the backends on the block's shapes.
    """

    def __init__(self, dim: int, num_heads: int, qk_norm: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=1e-5) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, eps=1e-5) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.kernel: Optional[str] = None

    def forward(self, x: torch.Tensor, rope: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, N, C); rope: cos/sin broadcastable to (B, heads, N, head_dim); rows (B, R) long:
        answer only these query tokens (keys and values stay all N) -> (B, R, C), else (B, N, C)."""
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if rows is not None:
            q = torch.gather(q, 2, rows[:, None, :, None].expand(B, q.shape[1], rows.shape[1], q.shape[3]))
        x = attention(q, k, v, self.kernel)
        return self.proj(x.transpose(1, 2).reshape(B, -1, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale. `norm_eps` 1e-6 in the ViT.

    The only block implementation: the plain path calls it, the fast path wraps it
    (torch.compile, CUDA graphs) without changing it."""

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

    def forward(self, x: torch.Tensor, rope=None, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D); with `rows` (B, R) only those tokens' outputs (B, R, D)."""
        h = self.attn(self.norm1(x), rope, rows)
        if rows is not None:
            x = torch.gather(x, 1, rows[:, :, None].expand(-1, -1, x.shape[-1]))
        x = x + self.ls1(h)
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
    -> `forward_late` (cross-view; head inputs of the wanted views and every
    view's camera token).
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
    def forward_early(self, x: torch.Tensor, blocks: Optional[Sequence[nn.Module]] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-view blocks [0, n_early) on tokens (N, T, D).

        Returns (tokens after the last per-view block, selector) where selector
        (N, D) is token 0 at the INPUT of block n_early - 1: the official code picks
        the reference view from it (and reorders just before that block).
        `blocks`: callables standing in for `self.blocks` (the fast path's compiled
        wrappers of these same modules); None runs the modules themselves.
        """
        blocks = self.blocks if blocks is None else blocks
        sel = x[:, 0]
        for i in range(self.n_early):
            if i == self.n_early - 1:
                sel = x[:, 0]
            x = blocks[i](x)
        return x, sel

    def forward_late(self, x: torch.Tensor, ph: int, pw: int, cam_token: Optional[torch.Tensor] = None,
                     keep: Optional[torch.Tensor] = None, blocks: Optional[Sequence[nn.Module]] = None
                     ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Cross-view blocks on (B, S, T, D) with the reference view already first.

        cam_token: (B, S, D) from the camera encoder, or None to use the learnt
        reference/other tokens. keep: (B, n) positions of the views whose patch
        features are wanted (None: all S, in window order). When the last block is
        global and an out layer, it answers only the kept views' tokens and every
        view's camera token (its other outputs are never used).

        Returns (patch features per out layer (B, n, P, C_out) fp32, camera tokens of
        all S views (B, S, C_out) fp32 from the last out layer).
        """
        blocks = self.blocks if blocks is None else blocks
        B, S, T, D = x.shape
        cos_l, sin_l, cos_g, sin_g = self.rope.get(ph, pw, x.device)
        rope_local = (cos_l, sin_l)
        # global attention runs on S*T tokens: repeat the per-view pattern S times
        rope_global = (cos_g.repeat(S, 1), sin_g.repeat(S, 1))
        if cam_token is None:
            cam_token = torch.cat((self.camera_token[:, :1].expand(B, 1, D),
                                   self.camera_token[:, 1:].expand(B, S - 1, D)), 1)
        x = torch.cat((cam_token.to(x.dtype)[:, :, None], x[:, :, 1:]), 2)
        out_layers = set(self.cfg.out_layers)
        last = len(self.blocks) - 1
        restrict = keep is not None and last % 2 == 1 and last in out_layers and last > self.alt_start
        outs, local_x, cam_rows = [], x, None
        for i in range(self.alt_start, len(self.blocks)):
            if i % 2 == 1 and i == last and restrict:
                n = keep.shape[1]
                tok = torch.arange(T, device=x.device)
                rows = torch.cat(((keep[:, :, None] * T + tok).flatten(1),
                                  (torch.arange(S, device=x.device) * T).expand(B, S)), 1)  # (B, n*T + S)
                y = blocks[i](x.reshape(B, S * T, D), rope_global, rows)
                x, cam_rows = y[:, :n * T].view(B, n, T, D), y[:, n * T:]
                outs.append((local_x, x))
                break
            if i % 2 == 1:
                x = blocks[i](x.reshape(B, S * T, D), rope_global).view(B, S, T, D)
            else:
                x = blocks[i](x.reshape(B * S, T, D), rope_local).view(B, S, T, D)
                local_x = x
            if i in out_layers:
                outs.append((local_x, x))
        lx, gx = outs[-1]
        cam = self.camera_features(lx[:, :, 0], gx[:, :, 0] if cam_rows is None else cam_rows)
        feats = []
        for j, (lx, gx) in enumerate(outs):
            if keep is not None:
                idx = keep[:, :, None, None].expand(B, keep.shape[1], T, D)
                lx = torch.gather(lx, 1, idx)
                if cam_rows is None or j < len(outs) - 1:  # the restricted block's output is already kept-only
                    gx = torch.gather(gx, 1, idx)
            feats.append(self.patch_features(lx, gx))
        return feats, cam

    def forward_mono(self, x: torch.Tensor) -> List[torch.Tensor]:
        """All blocks per view (models without cross-view layers). x (N, T, D) -> patch
        features per out layer (N, P, C_out) fp32."""
        feats, out_layers = [], set(self.cfg.out_layers)
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in out_layers:
                feats.append(self.patch_features(x, x))
        return feats

    def patch_features(self, local_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Head input of an out layer: patch tokens (..., P, C_out) fp32 of [last local output,
        normed output] (cat_token) or of the normed output."""
        if self.cfg.cat_token:
            return torch.cat((local_x[..., 1:, :].float(), self.norm(x[..., 1:, :]).float()), -1)
        return self.norm(x[..., 1:, :]).float()

    def camera_features(self, local_x0: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Camera-decoder input from token 0 of the last out layer (..., C_out) fp32 (not normed)."""
        raw = torch.cat((local_x0, x0), -1) if self.cfg.cat_token else x0
        return raw.float()


class Backbone(nn.Module):
    """Wrapper so parameter names match the checkpoints (`backbone.pretrained.*`)."""

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.pretrained = VisionTransformer(cfg)
