"""Camera pose and intrinsics from a DA3 ray map (deterministic, fp32).

Model: the ray through normalised image point p = (x, y, 1) (x, y in [-1, 1]
over the full image width / height, pixel centres at 2 (i + 0.5) / n - 1) has
world direction d ~ M p with M = R_c2w K_n^-1 (a homography between the image
plane and the directions). We fit M by a confidence-weighted DLT on the
constraint d x (M p) = 0 (no division by d_z, so rays near 90 degrees are fine),
started from a consensus of fixed (locally seeded, hence reproducible) 8-point
subsets of the most confident rays and re-weighted a few times with a Cauchy kernel on the angular residual (IRLS) to
reject outliers, then split M = R U (Gram-Schmidt) (R proper rotation, U upper triangular
= K_n^-1 up to scale). The camera centre is the weighted mean of ray origins.

Same input, same answer: the only sampling uses a fixed local seed. Inputs and
outputs are fp32 (autocast disabled); the 9x9 normal matrices are accumulated and
solved in float64 for accuracy (tiny: a few hundred flops per ray).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def normalized_grid(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h, w, 2) pixel-centre coordinates (x, y) in [-1, 1]."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * (2.0 / w) - 1.0
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx, yy), -1)


def ray_map_grid(h: int, w: int, factor: int = 1, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h, w, 2) image coordinates (x, y) in [-1, 1] of a ray map's samples.

    The official map (8 x the patch grid, factor 1): pixel centres (`normalized_grid`).
    A map `factor` times coarser per axis (`DualDPT.forward_rays(half=True)`: 2,
    `forward_rays_quarter`: 4), whose samples the official map would resize with align
    corners: sample j sits at full-map pixel j (factor h - 1) / (h - 1)."""
    if factor == 1:
        return normalized_grid(h, w, device, dtype)

    def axis(n):
        pos = torch.arange(n, device=device, dtype=torch.float64) * ((factor * n - 1) / max(n - 1, 1))
        return ((pos + 0.5) * (2.0 / (factor * n)) - 1.0).to(dtype)

    yy, xx = torch.meshgrid(axis(h), axis(w), indexing="ij")
    return torch.stack((xx, yy), -1)


def _null_vector(G: torch.Tensor, x0: Optional[torch.Tensor] = None, iters: int = 3) -> torch.Tensor:
    """Unit eigenvector of the smallest eigenvalue of PSD matrices G (V, 9, 9), float64.

    Shifted inverse iteration with `solve_ex` (no error check, hence no host sync on
    GPUs; eigh would sync and launch a cuSOLVER job per call). The tiny shift keeps
    the solve regular when the null space is exact; convergence per step is the
    ratio of the two smallest eigenvalues (about the squared noise level).
    """
    V, n, _ = G.shape
    eye = torch.eye(n, dtype=G.dtype, device=G.device)
    shift = 1e-12 * torch.diagonal(G, dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)
    Gs = G + shift[:, None, None] * eye
    x = torch.ones(V, n, dtype=G.dtype, device=G.device) if x0 is None else x0.to(G.dtype)
    for _ in range(iters):
        x = torch.linalg.solve_ex(Gs, x[..., None])[0][..., 0]
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return x


def _kron_eye3(P: torch.Tensor) -> torch.Tensor:
    """Batched kron(I_3, P) for P (V, 3, 3) -> (V, 9, 9) block diagonal."""
    G = P.new_zeros(P.shape[0], 9, 9)
    for i in range(3):
        G[:, 3 * i:3 * i + 3, 3 * i:3 * i + 3] = P
    return G


def _det3(M: torch.Tensor) -> torch.Tensor:
    return (M[:, 0] * torch.cross(M[:, 1], M[:, 2], dim=-1)).sum(-1)


def _fit_homography(p: torch.Tensor, d: torch.Tensor, w: torch.Tensor,
                    M0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weighted DLT. p, d (V, N, 3), w (V, N) -> M (V, 3, 3) with det(M) > 0, |M| = 1."""
    # 9x9 weighted normal matrix of the DLT rows kron([d]x, p^T), accumulated in float64:
    # sum w kron(|d|^2 I - d d^T, p p^T) = kron(I, sum w |d|^2 p p^T) - sum w (d (x) p)(d (x) p)^T.
    # Two batched GEMMs and no 3N x 9 design matrix; float64 keeps the null vector
    # accurate to ~1e-7 (float32 would square the design's condition number into it).
    pd, dd, wd = p.double(), d.double(), w.clamp_min(0).double()
    q = (dd[..., :, None] * pd[..., None, :]).flatten(-2)  # (V, N, 9) = d (x) p
    P = torch.einsum("vna,vn,vnb->vab", pd, wd * (dd * dd).sum(-1), pd)
    G = _kron_eye3(P) - torch.einsum("vni,vn,vnj->vij", q, wd, q)
    M = _null_vector(G, None if M0 is None else M0.reshape(-1, 9)).float().reshape(-1, 3, 3)
    return M * torch.where(_det3(M) < 0, -1.0, 1.0)[:, None, None]


def _rq_split(M: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """M (V, 3, 3), det > 0 -> (R proper rotation, U upper triangular, positive diagonal)
    with M = R U: Gram-Schmidt on the columns, closed form (no solver calls)."""
    m1, m2, m3 = M[..., 0], M[..., 1], M[..., 2]
    u11 = m1.norm(dim=-1)
    q1 = m1 / u11[:, None]
    u12 = (q1 * m2).sum(-1)
    v2 = m2 - u12[:, None] * q1
    u22 = v2.norm(dim=-1)
    q2 = v2 / u22[:, None]
    u13, u23 = (q1 * m3).sum(-1), (q2 * m3).sum(-1)
    q3 = torch.cross(q1, q2, dim=-1)  # right-handed; det(M) > 0 makes u33 > 0
    u33 = (q3 * m3).sum(-1)
    z = torch.zeros_like(u11)
    U = torch.stack((torch.stack((u11, u12, u13), -1), torch.stack((z, u22, u23), -1),
                     torch.stack((z, z, u33), -1)), -2)
    return torch.stack((q1, q2, q3), -1), U


def _upper_inverse(U: torch.Tensor) -> torch.Tensor:
    """Inverse of upper-triangular [[a, b, c], [0, d, e], [0, 0, 1]] (V, 3, 3), closed form."""
    a, b, c, d, e = U[:, 0, 0], U[:, 0, 1], U[:, 0, 2], U[:, 1, 1], U[:, 1, 2]
    z, o = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack((torch.stack((1 / a, -b / (a * d), (b * e - c * d) / (a * d)), -1),
                        torch.stack((z, 1 / d, -e / d), -1), torch.stack((z, z, o), -1)), -2)


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
               kernel_scale: float = 3.0, grid: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit one camera per ray map.

    ray: (V, h, w, 6) [world direction (any length), origin]; conf: (V, h, w) >= 0;
    grid: (h, w, 2) image coordinates of the samples (default: pixel centres,
    `normalized_grid`; see `ray_map_grid`). A regular sub-grid of at most `max_points`
    samples is used. Returns c2w (V, 3, 4), normalised intrinsics K_n (V, 3, 3) (image
    spanning [-1, 1]; see `denormalize_intrinsics`), and the final per-point weights (V, N).
    """
    V, h, w, _ = ray.shape
    # regular sub-grid keeps the cost bounded on large maps (deterministic)
    step = 1
    while (h // step) * (w // step) > max_points:
        step += 1
    off = step // 2
    grid = normalized_grid(h, w, ray.device) if grid is None else grid
    return solve_ray_points(grid[off::step, off::step].reshape(-1, 2), ray[:, off::step, off::step].reshape(V, -1, 6),
                            conf[:, off::step, off::step].reshape(V, -1), iters, kernel_scale)


def solve_ray_points(points: torch.Tensor, ray: torch.Tensor, conf: torch.Tensor, iters: int = 4,
                     kernel_scale: float = 3.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`solve_rays` on rays at given image points: points (N, 2) (x, y) in [-1, 1] over the
    image (pixel centres, as `normalized_grid`), ray (V, N, 6), conf (V, N)."""
    with torch.autocast(device_type=ray.device.type, enabled=False):
        r, c = ray.float(), conf.float()
        V = r.shape[0]
        grid = points.to(device=r.device, dtype=torch.float32)
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
            M = _fit_homography(p, d, wts, M)
        Q, U = _rq_split(M)
        K_n = _upper_inverse(U / U[:, 2:3, 2:3])
        wsum = wts.sum(-1, keepdim=True).clamp_min(1e-12)
        centre = (r[..., 3:] * torch.nan_to_num(wts)[..., None]).nan_to_num().sum(1) / wsum
        return torch.cat((Q, centre[..., None]), -1), K_n, wts


def denormalize_intrinsics(K_n: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised intrinsics (image = [-1, 1]^2) -> pixels of a height x width image:
    diag(w/2, h/2, 1) K_n + (w/2, h/2) times K_n's last row (no host->device copy, so it
    can be captured in a CUDA graph)."""
    r0, r1, r2 = K_n[..., 0, :], K_n[..., 1, :], K_n[..., 2, :]
    return torch.stack((width / 2 * (r0 + r2), height / 2 * (r1 + r2), r2), -2)


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
