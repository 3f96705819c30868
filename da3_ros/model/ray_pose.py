"""Camera pose and intrinsics from a DA3 ray map (deterministic, fp32).

Model: the ray through normalised image point p = (x, y, 1) (x, y in [-1, 1]
over the full image width / height, pixel centres at 2 (i + 0.5) / n - 1) has
world direction d ~ M p with M = R_c2w K_n^-1 (a homography between the image
plane and the directions). We fit M by a confidence-weighted DLT on the
constraint d x (M p) = 0 (no division by d_z, so rays near 90 degrees are fine),
started from a consensus of fixed (locally seeded, hence reproducible) 8-point
subsets of the most confident rays and re-weighted a few times with a Cauchy kernel on the angular residual (IRLS) to
reject outliers, then split M = R U by QR (R proper rotation, U upper triangular
= K_n^-1 up to scale). The camera centre is the weighted mean of ray origins.

No sampling anywhere: same input, same answer. Everything runs in fp32 (autocast
disabled) with a QR of the design matrix before the 9x9 SVD for conditioning.
"""

from __future__ import annotations

from typing import Tuple

import torch


def normalized_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h, w, 2) pixel-centre coordinates (x, y) in [-1, 1]."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * (2.0 / w) - 1.0
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx, yy), -1)


def _design(p: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Rows of d x (M p) = 0 for unknown m = vec(M) (row-major). p, d (V, N, 3) -> (V, 3N, 9)."""
    dx, dy, dz = d.unbind(-1)
    z = torch.zeros_like(p)
    e1 = torch.cat((z, -dz[..., None] * p, dy[..., None] * p), -1)
    e2 = torch.cat((dz[..., None] * p, z, -dx[..., None] * p), -1)
    e3 = torch.cat((-dy[..., None] * p, dx[..., None] * p, z), -1)
    return torch.cat((e1, e2, e3), 1)


def _fit_homography(p: torch.Tensor, d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted DLT. p, d (V, N, 3), w (V, N) -> M (V, 3, 3) with det(M) > 0, |M| = 1."""
    sw = w.clamp_min(0).sqrt()
    A = _design(p, d) * torch.cat((sw, sw, sw), 1)[..., None]
    Rr = torch.linalg.qr(A, mode="r")[1]  # (V, 9, 9): same right singular vectors as A
    M = torch.linalg.svd(Rr)[2][:, -1].reshape(-1, 3, 3)
    sign = torch.where(torch.linalg.det(M) < 0, -1.0, 1.0).to(M.dtype)
    return M * sign[:, None, None]


def _angular_residual(p: torch.Tensor, d: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """|sin| of the angle between d and M p (d already unit). (V, N)."""
    q = torch.nn.functional.normalize(p @ M.transpose(1, 2), dim=-1)
    return torch.linalg.norm(torch.cross(d, q, dim=-1), dim=-1)


_SAMPLE_CACHE: dict = {}


def _sample_table(n_cand: int, n_hyp: int, k: int, device) -> torch.Tensor:
    """(n_hyp, k) fixed index sets into the candidates, from a locally seeded generator
    (identical on every call and machine; never touches the global RNG)."""
    key = (n_cand, n_hyp, k, str(device))
    if key not in _SAMPLE_CACHE:
        g = torch.Generator().manual_seed(0x0DA3)
        idx = torch.rand(n_hyp, n_cand, generator=g).argsort(dim=1)[:, :k]
        _SAMPLE_CACHE[key] = idx.to(device)
    return _SAMPLE_CACHE[key]


def _robust_init(p, d, c, n_hyp: int = 64, k: int = 8, thr: float = 0.05) -> torch.Tensor:
    """Consensus start for IRLS: fit `n_hyp` homographies on fixed k-subsets of the
    30 % most confident rays, keep the one whose inliers (|sin angle| < thr) carry
    the largest confidence, and return conf * inlier mask as starting weights."""
    V, N, _ = p.shape
    n_cand = max(k, int(0.3 * N))
    cand = torch.topk(c, n_cand, dim=1).indices  # (V, n_cand)
    sel = cand[:, _sample_table(n_cand, n_hyp, k, p.device)].reshape(V, n_hyp * k)  # (V, n_hyp*k)

    def take(t):
        return torch.gather(t, 1, sel[..., None].expand(-1, -1, t.shape[-1])).reshape(V * n_hyp, k, -1)

    cs = torch.gather(c, 1, sel).reshape(V * n_hyp, k)
    Mh = _fit_homography(take(p), take(d), cs).reshape(V, n_hyp, 3, 3)
    q = torch.nn.functional.normalize(torch.einsum("vhij,vnj->vhni", Mh, p), dim=-1)
    res = torch.linalg.norm(torch.cross(d[:, None].expand_as(q), q, dim=-1), dim=-1)  # (V, n_hyp, N)
    score = ((res < thr) * c[:, None]).sum(-1)
    best = score.argmax(1)
    inl = torch.gather(res, 1, best[:, None, None].expand(-1, 1, N))[:, 0] < thr
    return c * inl


def solve_rays(ray: torch.Tensor, conf: torch.Tensor, iters: int = 4, max_points: int = 16384,
               kernel_scale: float = 3.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit one camera per ray map.

    ray: (V, h, w, 6) [world direction (any length), origin]; conf: (V, h, w) >= 0.
    Returns c2w (V, 3, 4), normalised intrinsics K_n (V, 3, 3) (image spanning
    [-1, 1]; see `denormalize_intrinsics`), and the final per-point weights (V, N).
    """
    with torch.autocast(device_type=ray.device.type, enabled=False):
        ray, conf = ray.float(), conf.float()
        V, h, w, _ = ray.shape
        # regular sub-grid keeps the cost bounded on large maps (deterministic)
        step = 1
        while (h // step) * (w // step) > max_points:
            step += 1
        off = step // 2
        grid = normalized_grid(h, w, ray.device)[off::step, off::step].reshape(-1, 2)
        r = ray[:, off::step, off::step].reshape(V, -1, 6)
        c = conf[:, off::step, off::step].reshape(V, -1)
        p = torch.cat((grid, torch.ones_like(grid[:, :1])), -1).expand(V, -1, -1)
        dn = torch.linalg.norm(r[..., :3], dim=-1)
        valid = torch.isfinite(r).all(-1) & torch.isfinite(c) & (dn > 1e-8)
        d = torch.where(valid[..., None], r[..., :3] / dn.clamp_min(1e-8)[..., None], torch.zeros_like(r[..., :3]))
        c = torch.where(valid, c.clamp_min(0), torch.zeros_like(c))
        wts = _robust_init(p, d, c)
        M = _fit_homography(p, d, wts)
        for _ in range(iters):
            res = _angular_residual(p, d, M)
            # robust scale: median residual of valid points (floor avoids 0 on exact data)
            med = torch.nanmedian(torch.where(valid, res, torch.full_like(res, float("nan"))), dim=1).values
            med = torch.nan_to_num(med, nan=1.0)
            sigma = (1.4826 * med).clamp_min(1e-4) * kernel_scale
            wts = c / (1.0 + (res / sigma[:, None]) ** 2)
            M = _fit_homography(p, d, wts)
        Q, U = torch.linalg.qr(M)
        s = torch.sign(torch.diagonal(U, dim1=-2, dim2=-1))
        s = torch.where(s == 0, torch.ones_like(s), s)
        Q = Q * s[:, None, :]
        U = U * s[:, :, None]
        K_n = torch.linalg.inv(U / U[:, 2:3, 2:3])
        K_n = K_n / K_n[:, 2:3, 2:3]
        wsum = wts.sum(-1, keepdim=True).clamp_min(1e-12)
        centre = (r[..., 3:] * torch.nan_to_num(wts)[..., None]).nan_to_num().sum(1) / wsum
        return torch.cat((Q, centre[..., None]), -1), K_n, wts


def denormalize_intrinsics(K_n: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised intrinsics (image = [-1, 1]^2) -> pixels of a height x width image."""
    S = torch.tensor([[width / 2, 0, width / 2], [0, height / 2, height / 2], [0, 0, 1]],
                     dtype=K_n.dtype, device=K_n.device)
    return S @ K_n


def rays_from_camera(c2w: torch.Tensor, K: torch.Tensor, h: int, w: int, height: int, width: int) -> torch.Tensor:
    """Synthetic ray map (V, h, w, 6) on an h x w grid of a camera (K in pixels of height x width)."""
    S = torch.tensor([[width / 2, 0, width / 2], [0, height / 2, height / 2], [0, 0, 1]],
                     dtype=K.dtype, device=K.device)
    K_n = torch.linalg.solve(S, K)
    g = normalized_grid(h, w, K.device, K.dtype)
    p = torch.cat((g, torch.ones_like(g[..., :1])), -1)  # (h, w, 3)
    dirs_cam = torch.einsum("vij,hwj->vhwi", torch.linalg.inv(K_n), p)
    dirs = torch.einsum("vij,vhwj->vhwi", c2w[:, :3, :3], dirs_cam)
    org = c2w[:, None, None, :3, 3].expand_as(dirs)
    return torch.cat((dirs, org), -1)
