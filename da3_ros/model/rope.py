"""2D rotary position embedding (RoPE) of the DA3 cross-view blocks.

Each head's channels are split in two halves: the first half is rotated by the
token's row (y), the second by its column (x); within a half the usual
rotate-half pairing (i, i + d/2) is used. Frequencies: base**(-2k/d), base 100.

Instead of gathering cos/sin per call we build one (N, head_dim) table per token
layout and cache it, so a block costs two fused multiply-adds.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch


def _axis_angles(pos: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    """(N,) integer positions -> (N, dim) angles laid out as [theta, theta]."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, device=pos.device).float() / dim))
    ang = pos.float()[:, None] * inv_freq[None, :]
    return torch.cat((ang, ang), dim=-1)


def rope_tables(pos_yx: torch.Tensor, head_dim: int, base: float = 100.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (N, head_dim), fp32, for token positions `pos_yx` (N, 2) = (y, x)."""
    half = head_dim // 2
    ang = torch.cat((_axis_angles(pos_yx[:, 0], half, base), _axis_angles(pos_yx[:, 1], half, base)), -1)
    return ang.cos(), ang.sin()


def _rotate_quarters(t: torch.Tensor) -> torch.Tensor:
    """[a, b | c, d] -> [-b, a | -d, c] (rotate-half inside each axis half)."""
    q = t.unflatten(-1, (2, 2, t.shape[-1] // 4))
    return torch.cat((-q[..., 1:, :], q[..., :1, :]), dim=-2).flatten(-3)


def apply_rope(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate `t` (..., N, head_dim) by tables broadcastable to it."""
    return t * cos.to(t.dtype) + _rotate_quarters(t) * sin.to(t.dtype)


class RopeCache:
    """Tables for one (ph, pw) patch grid with a leading special token at (0, 0).

    local:  special token (0, 0), patch (r, c) at (r + 1, c + 1).
    global: special token (0, 0), every patch at (1, 1); no spatial term across views.
    """

    def __init__(self, head_dim: int, base: float = 100.0):
        self.head_dim = head_dim
        self.base = base
        self._cache: Dict[tuple, Tuple[torch.Tensor, ...]] = {}

    def get(self, ph: int, pw: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
        key = (ph, pw, str(device))
        if key not in self._cache:
            with torch.inference_mode(False):  # plain tensors: usable later with autograd too
                self._cache[key] = self._build(ph, pw, device)
        return self._cache[key]

    def _build(self, ph: int, pw: int, device: torch.device) -> Tuple[torch.Tensor, ...]:
        yy, xx = torch.meshgrid(torch.arange(ph, device=device), torch.arange(pw, device=device), indexing="ij")
        grid = torch.stack((yy.reshape(-1), xx.reshape(-1)), -1) + 1
        special = torch.zeros(1, 2, dtype=grid.dtype, device=device)
        local = torch.cat((special, grid), 0)
        glob = torch.cat((special, torch.ones_like(grid)), 0)
        return rope_tables(local, self.head_dim, self.base) + rope_tables(glob, self.head_dim, self.base)
