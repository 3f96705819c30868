"""DPT dense heads: the any-view Dual-DPT (depth + ray map) and the monocular DPT
(depth + sky) of DA3METRIC / DA3MONO.

Inputs are per-view patch features, so both heads run on any subset of views.
The Dual-DPT is split in three stages so the streaming path can run only what it
needs: `stem` (shared), `forward_depth` (main branch) and `forward_rays` (last
level of the aux branch; the three coarser aux levels the official head computes
and discards are never computed here, but their weights exist for the checkpoints).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import PATCH_SIZE, HeadConfig


class Permute(nn.Module):
    def __init__(self, dims: Tuple[int, ...]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


class ResidualConvUnit(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv2 = nn.Conv2d(features, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """RefineNet-style fusion: (+ lateral residual) -> residual unit -> 2x/size upsample -> 1x1."""

    def __init__(self, features: int, has_residual: bool = True):
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features) if has_residual else None
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def body(self, x: torch.Tensor, lateral: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The part before the resize (all 3x3 convolutions: 2 on the lateral, 2 after the sum)."""
        if lateral is not None and self.resConfUnit1 is not None:
            x = x + self.resConfUnit1(lateral)
        return self.resConfUnit2(x)

    def forward(self, x: torch.Tensor, lateral: Optional[torch.Tensor] = None,
                size: Optional[Sequence[int]] = None) -> torch.Tensor:
        x = self.body(x, lateral)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


_UV_CACHE: Dict[tuple, torch.Tensor] = {}


def uv_embedding(channels: int, h: int, w: int, aspect: float, device, dtype, ratio: float = 0.1) -> torch.Tensor:
    """(channels, h, w) sin/cos embedding of a centred UV grid (diagonal-normalised), x ratio."""
    key = (channels, h, w, float(aspect), str(device), dtype, ratio)
    pe = _UV_CACHE.get(key)
    if pe is None:
        with torch.inference_mode(False):  # plain tensor: reusable with autograd
            pe = _uv_embedding(channels, h, w, aspect, device, dtype, ratio)
        if len(_UV_CACHE) > 64:
            _UV_CACHE.clear()
        _UV_CACHE[key] = pe
    return pe


def _uv_embedding(channels: int, h: int, w: int, aspect: float, device, dtype, ratio: float) -> torch.Tensor:
    diag = (aspect ** 2 + 1.0) ** 0.5
    sx, sy = aspect / diag, 1.0 / diag
    xs = torch.linspace(-sx * (w - 1) / w, sx * (w - 1) / w, w, dtype=dtype, device=device)
    ys = torch.linspace(-sy * (h - 1) / h, sy * (h - 1) / h, h, dtype=dtype, device=device)
    uu, vv = torch.meshgrid(xs, ys, indexing="xy")  # (h, w)
    quarter = channels // 4
    omega = 1.0 / 100.0 ** (torch.arange(quarter, dtype=torch.float32, device=device) / quarter)

    def sincos(p):
        a = p.reshape(-1, 1).float() * omega
        return torch.cat((a.sin(), a.cos()), -1)

    pe = torch.cat((sincos(uu), sincos(vv)), -1).view(h, w, channels).permute(2, 0, 1) * ratio
    return pe.to(dtype).contiguous()


def _scratch(out_channels: Sequence[int], features: int) -> nn.Module:
    s = nn.Module()
    for i, c in enumerate(out_channels):
        setattr(s, f"layer{i + 1}_rn", nn.Conv2d(c, features, 3, 1, 1, bias=False))
    return s


class _DPTBase(nn.Module):
    """Projection, resize and lateral convs shared by both heads."""

    uv_pos: bool = False

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        oc = cfg.out_channels
        self.projects = nn.ModuleList(nn.Conv2d(cfg.dim_in, c, 1) for c in oc)
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], 4, 4), nn.ConvTranspose2d(oc[1], oc[1], 2, 2),
            nn.Identity(), nn.Conv2d(oc[3], oc[3], 3, 2, 1),
        ])
        self.scratch = _scratch(oc, cfg.features)
        f = cfg.features
        for i in (1, 2, 3):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(f))
        self.scratch.refinenet4 = FusionBlock(f, has_residual=False)
        self.scratch.output_conv1 = nn.Conv2d(f, f // 2, 3, 1, 1)

    def _pe(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        return x + uv_embedding(x.shape[1], x.shape[2], x.shape[3], W / H, x.device, x.dtype)

    def project(self, i: int, f: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Level i at the patch grid: (N, P, C) patch features -> norm, 1x1 projection
        (+ UV embedding) -> (N, out_channels[i], ph, pw)."""
        ph, pw = H // PATCH_SIZE, W // PATCH_SIZE
        x = self.norm(f)
        x = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], ph, pw)
        x = self.projects[i](x)
        return self._pe(x, H, W) if self.uv_pos else x

    def lateral(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Level i from the patch grid to its own resolution (4x, 2x, 1x, 1/2x) and `features` channels."""
        return getattr(self.scratch, f"layer{i + 1}_rn")(self.resize_layers[i](x))

    def stem(self, feats: List[torch.Tensor], H: int, W: int) -> List[torch.Tensor]:
        """4 x (N, P, C) patch features (fp32) -> 4 lateral maps (N, features, h_i, w_i)."""
        return [self.lateral(i, self.project(i, f, H, W)) for i, f in enumerate(feats)]

    def _fuse(self, rn: List[torch.Tensor], suffix: str = "", last_resize: bool = True) -> torch.Tensor:
        """Coarse-to-fine fusion; the last block resizes to 2x its input (8 x the patch grid)
        unless `last_resize` is False (then the result stays at 4 x the patch grid)."""
        s = self.scratch
        l1, l2, l3, l4 = rn
        x = getattr(s, "refinenet4" + suffix)(l4, size=l3.shape[2:])
        x = getattr(s, "refinenet3" + suffix)(x, l3, size=l2.shape[2:])
        x = getattr(s, "refinenet2" + suffix)(x, l2, size=l1.shape[2:])
        last = getattr(s, "refinenet1" + suffix)
        return last(x, l1) if last_resize else last.out_conv(last.body(x, l1))


class DualDPT(_DPTBase):
    """Any-view head: depth (exp) + conf (exp + 1) at the input resolution, and a
    6-channel ray map (direction, origin; linear) + conf at 8 x the patch grid."""

    uv_pos = True

    def __init__(self, cfg: HeadConfig):
        super().__init__(cfg)
        f, f2 = cfg.features, 32
        self.norm = nn.LayerNorm(cfg.dim_in, eps=1e-5)
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(f // 2, f2, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(f2, cfg.output_dim, 1))
        for i in (1, 2, 3):
            setattr(self.scratch, f"refinenet{i}_aux", FusionBlock(f))
        self.scratch.refinenet4_aux = FusionBlock(f, has_residual=False)
        self.scratch.output_conv1_aux = nn.ModuleList(
            nn.Sequential(nn.Conv2d(f, f // 2, 3, 1, 1), nn.Conv2d(f // 2, f, 3, 1, 1),
                          nn.Conv2d(f, f // 2, 3, 1, 1), nn.Conv2d(f // 2, f, 3, 1, 1),
                          nn.Conv2d(f, f // 2, 3, 1, 1))
            for _ in range(4))
        # ONE LayerNorm shared by the four aux levels (the checkpoints alias it 4 times)
        ln = nn.LayerNorm(f2, eps=1e-5)
        self.scratch.output_conv2_aux = nn.ModuleList(
            nn.Sequential(nn.Conv2d(f // 2, f2, 3, 1, 1), Permute((0, 2, 3, 1)), ln, Permute((0, 3, 1, 2)),
                          nn.ReLU(inplace=True), nn.Conv2d(f2, 7, 1))
            for _ in range(4))

    def forward_depth(self, rn: List[torch.Tensor], H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> depth (N, H', W'), depth_conf (N, H', W') with H' = 14 * ph."""
        ph, pw = H // PATCH_SIZE, W // PATCH_SIZE
        x = self.scratch.output_conv1(self._fuse(rn))
        x = F.interpolate(x, size=(ph * PATCH_SIZE, pw * PATCH_SIZE), mode="bilinear", align_corners=True)
        x = self.scratch.output_conv2(self._pe(x, H, W))
        return torch.exp(x[:, 0]), torch.exp(x[:, -1]) + 1

    def forward_rays(self, rn: List[torch.Tensor], H: int, W: int, half: bool = False
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """-> ray (N, h, w, 6) [world direction, camera centre], ray_conf (N, h, w).

        The official ray map is 8 x the patch grid (h, w = 8ph, 8pw). `half`: the head's
        last stage (the 1x1 after the last fusion, the output convolutions) runs on the
        4 x grid instead, skipping the final 2x resize: a quarter of the pixels of the
        costliest stage, the same field at half the sampling rate (`ray_map_grid` gives
        where its samples sit). Enough for the pose solver, which fits a 3x3 homography
        and a centre per view; not the official ray map.
        """
        return self._ray_outputs(self._fuse(rn, "_aux", last_resize=not half), H, W)

    def forward_rays_quarter(self, feats: List[torch.Tensor], H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ray head on the 2 x grid (a quarter of the official map's resolution per axis):
        no level runs above 2 x the patch grid (level 0's lateral is area-averaged down to it,
        the last two fusions skip their resize). feats: 4 x (N, P, C). Approximate, like `half`."""
        s = self.scratch
        l1 = s.layer1_rn(F.avg_pool2d(self.resize_layers[0](self.project(0, feats[0], H, W)), 2))
        l2, l3, l4 = (self.lateral(i, self.project(i, feats[i], H, W)) for i in (1, 2, 3))
        x = s.refinenet4_aux(l4, size=l3.shape[2:])
        x = s.refinenet3_aux(x, l3, size=l2.shape[2:])
        x = s.refinenet2_aux.out_conv(s.refinenet2_aux.body(x, l2))
        return self._ray_outputs(s.refinenet1_aux.out_conv(s.refinenet1_aux.body(x, l1)), H, W)

    def _ray_outputs(self, x: torch.Tensor, H: int, W: int) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.scratch.output_conv1_aux[-1](x)
        x = self.scratch.output_conv2_aux[-1](self._pe(x, H, W)).permute(0, 2, 3, 1)
        return x[..., :6], torch.exp(x[..., 6]) + 1

    def forward(self, feats: List[torch.Tensor], H: int, W: int) -> Dict[str, torch.Tensor]:
        rn = self.stem(feats, H, W)
        depth, conf = self.forward_depth(rn, H, W)
        ray, ray_conf = self.forward_rays(rn, H, W)
        return {"depth": depth, "depth_conf": conf, "ray": ray, "ray_conf": ray_conf}


class DPT(_DPTBase):
    """Monocular head: depth = exp(logit) and sky = relu(logit), input resolution."""

    def __init__(self, cfg: HeadConfig):
        super().__init__(cfg)
        f, f2 = cfg.features, 32
        self.norm = nn.Identity()
        self.scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(f // 2, f2, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(f2, cfg.output_dim, 1))
        self.scratch.sky_output_conv2 = nn.Sequential(
            nn.Conv2d(f // 2, f2, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(f2, 1, 1))

    def forward(self, feats: List[torch.Tensor], H: int, W: int) -> Dict[str, torch.Tensor]:
        ph, pw = H // PATCH_SIZE, W // PATCH_SIZE
        x = self.scratch.output_conv1(self._fuse(self.stem(feats, H, W)))
        x = F.interpolate(x, size=(ph * PATCH_SIZE, pw * PATCH_SIZE), mode="bilinear", align_corners=True)
        return {"depth": torch.exp(self.scratch.output_conv2(x)[:, 0]),
                "sky": F.relu(self.scratch.sky_output_conv2(x)[:, 0])}
