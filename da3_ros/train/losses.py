"""Training targets and losses of the embedded model (after the DA3 paper).

Per sample (one multi-view window, view 0 = reference = world frame):
* the scene scale s = mean ground-truth depth of the reference view; depth,
  camera centres and ray origins are divided by s (scale-normalised);
* depth: confidence-weighted L1, conf * |d - d*| - alpha * log(conf), plus a
  plain L1 on log depth (keeps low-confidence regions learning);
* rays (6 channels: world direction R K^-1 [u v 1], camera centre): the same
  confidence-weighted L1 at the ray-map resolution (8x the patch grid);
* camera (decoder on the camera token): L1 on its raw pose encoding, i.e. the
  centre, the (unnormalised) quaternion against the ground truth's with w >= 0,
  and the two fields of view. (A loss on the rotation matrix instead traps the
  reference view at 180 degrees, where its gradient vanishes: seen in run 1.)
* correspondence (optional, `match_loss`): one head of the first cross-view block
  is told where each patch of view v lies in the reference view (ground-truth depth
  and poses, occlusion-checked): cross-entropy of its attention logits over the
  reference view's patches. Without it the network learnt depth but no relative
  pose in the training time we have: from random weights, attention that finds
  the matching patch gets almost no gradient (1 of a few hundred keys); this
  installs the matching the poses and rays are read from.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..model.camera import quat_to_rotmat, rotmat_to_quat
from ..model.ray_pose import rays_from_camera

CONF_ALPHA = 0.2
#: weights of the camera-decoder terms (centre, quaternion, fov)
W_T, W_Q, W_FOV = 5.0, 5.0, 1.0


def targets(depth: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor, image_hw: Tuple[int, int],
            ray_hw: Tuple[int, int]) -> Dict[str, torch.Tensor]:
    """depth (B, S, H, W) metres (0 = invalid), c2w (B, S, 4, 4), K (B, S, 3, 3) pixels of the
    network input (continuous convention: pixel centres at +0.5) -> normalised targets."""
    B, S, H, W = depth.shape
    valid = torch.isfinite(depth) & (depth > 0)
    d0 = torch.where(valid[:, 0], depth[:, 0], torch.zeros_like(depth[:, 0]))
    scale = d0.flatten(1).sum(1) / valid[:, 0].flatten(1).sum(1).clamp_min(1)  # (B,)
    rel = torch.linalg.inv(c2w[:, :1]) @ c2w  # reference camera = world
    rel = rel.clone()
    rel[..., :3, 3] = rel[..., :3, 3] / scale[:, None, None]
    dn = torch.where(valid, depth / scale[:, None, None, None], torch.ones_like(depth))
    rays = rays_from_camera(rel.flatten(0, 1), K.flatten(0, 1), ray_hw[0], ray_hw[1], H, W)
    fov_h = 2 * torch.atan((H / 2) / K[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / K[..., 0, 0])
    return {"depth": dn, "valid": valid, "rays": rays.unflatten(0, (B, S)), "t": rel[..., :3, 3],
            "R": rel[..., :3, :3], "q": rotmat_to_quat(rel[..., :3, :3]), "fov": torch.stack((fov_h, fov_w), -1), "scale": scale}


def conf_l1(err: torch.Tensor, conf: torch.Tensor, mask: torch.Tensor, alpha: float = CONF_ALPHA) -> torch.Tensor:
    m = mask.float()
    n = m.sum().clamp_min(1)
    return ((conf * err - alpha * torch.log(conf)) * m).sum() / n


def losses(pred: Dict[str, torch.Tensor], tgt: Dict[str, torch.Tensor], w_t: float = W_T, w_q: float = W_Q,
           w_fov: float = W_FOV) -> Dict[str, torch.Tensor]:
    """pred: depth, depth_conf (B, S, H, W), ray (B, S, h, w, 6), ray_conf (B, S, h, w), pose_enc (B, S, 9)."""
    valid = tgt["valid"]
    d, dt = pred["depth"], tgt["depth"]
    err = (d - dt).abs()
    l_depth = conf_l1(err, pred["depth_conf"], valid)
    l_logd = (((torch.log(d.clamp_min(1e-6)) - torch.log(dt)).abs()) * valid).sum() / valid.sum().clamp_min(1)
    r_err = (pred["ray"] - tgt["rays"]).abs().mean(-1)
    ones = torch.ones_like(r_err, dtype=torch.bool)
    l_ray = conf_l1(r_err, pred["ray_conf"], ones)
    l_ray_plain = r_err.mean()
    enc = pred["pose_enc"]
    l_t = (enc[..., :3] - tgt["t"]).abs().mean()
    l_q = (enc[..., 3:7] - tgt["q"]).abs().mean()
    with torch.no_grad():  # monitoring: rotation-matrix error of the decoded pose
        l_R = (quat_to_rotmat(enc[..., 3:7]) - tgt["R"]).abs().mean()
    l_fov = (enc[..., 7:9] - tgt["fov"]).abs().mean()
    total = l_depth + l_logd + l_ray + l_ray_plain + w_t * l_t + w_q * l_q + w_fov * l_fov
    return {"total": total, "depth": l_depth, "logdepth": l_logd, "ray": l_ray, "ray_l1": l_ray_plain,
            "cam_t": l_t, "cam_q": l_q, "cam_R": l_R, "cam_fov": l_fov}


def abs_rel_median(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over views of AbsRel after a per-view median scale (monitoring only)."""
    vals = []
    for p, g, v in zip(pred.flatten(0, 1), gt.flatten(0, 1), valid.flatten(0, 1)):
        if v.sum() < 10:
            continue
        s = torch.median(g[v] / p[v])
        vals.append(((p[v] * s - g[v]).abs() / g[v]).mean())
    return torch.stack(vals).mean() if vals else torch.tensor(float("nan"))


def resize_depth(depth: torch.Tensor, hw: Tuple[int, int]) -> torch.Tensor:
    """(N, H, W) -> (N, h, w) nearest (no mixing across depth edges)."""
    return F.interpolate(depth[:, None].float(), size=hw, mode="nearest")[:, 0]


def patch_correspondence(depth: torch.Tensor, c2w: torch.Tensor, K: torch.Tensor, grid_hw: Tuple[int, int],
                         occlusion: float = 0.05) -> torch.Tensor:
    """Ground-truth match in view 0 of every patch centre of every view.

    depth (B, S, H, W) metres at the network input (0 / non-finite = invalid), c2w
    (B, S, 4, 4), K (B, S, 3, 3) network pixels (continuous convention), grid_hw the
    patch grid. Returns (B, S, P) long: index of the view-0 patch the centre's 3D point
    projects into, -1 where it has no valid depth, leaves the image, lies behind the
    camera or is hidden in view 0 (its depth there differs by more than `occlusion`,
    relative). View 0's own row is -1 (nothing to learn).
    """
    B, S, H, W = depth.shape
    ph, pw = grid_hw
    dev = depth.device
    sy, sx = H / ph, W / pw
    ys = (torch.arange(ph, device=dev, dtype=torch.float32) + 0.5) * sy
    xs = (torch.arange(pw, device=dev, dtype=torch.float32) + 0.5) * sx
    v, u = torch.meshgrid(ys, xs, indexing="ij")
    u, v = u.reshape(-1), v.reshape(-1)  # (P,) continuous pixel coordinates of patch centres
    ui, vi = u.long().clamp(0, W - 1), v.long().clamp(0, H - 1)
    d = depth[:, :, vi, ui].float()  # (B, S, P)
    ok = torch.isfinite(d) & (d > 0)
    d = torch.where(ok, d, torch.ones_like(d))
    Kf = K.float()
    x_cam = torch.stack([(u - Kf[..., 0, 2, None]) / Kf[..., 0, 0, None] * d,
                         (v - Kf[..., 1, 2, None]) / Kf[..., 1, 1, None] * d, d], -1)  # (B, S, P, 3)
    rel = torch.linalg.inv(c2w[:, :1].float()) @ c2w.float()  # view -> view 0
    x0 = x_cam @ rel[..., :3, :3].transpose(-1, -2) + rel[..., None, :3, 3]
    z0 = x0[..., 2]
    K0 = Kf[:, :1]
    u0 = K0[..., 0, 0, None] * x0[..., 0] / z0.clamp_min(1e-6) + K0[..., 0, 2, None]
    v0 = K0[..., 1, 1, None] * x0[..., 1] / z0.clamp_min(1e-6) + K0[..., 1, 2, None]
    inside = (z0 > 1e-3) & (u0 >= 0) & (u0 < W) & (v0 >= 0) & (v0 < H)
    u0i, v0i = u0.long().clamp(0, W - 1), v0.long().clamp(0, H - 1)
    d0 = torch.gather(depth[:, 0].float().flatten(1), 1, (v0i * W + u0i).flatten(1)).view_as(z0)
    visible = torch.isfinite(d0) & (d0 > 0) & ((z0 - d0).abs() < occlusion * z0)
    idx = (v0 / sy).long().clamp(0, ph - 1) * pw + (u0 / sx).long().clamp(0, pw - 1)
    idx = torch.where(ok & inside & visible, idx, torch.full_like(idx, -1))
    idx[:, 0] = -1
    return idx


def match_loss(logits: torch.Tensor, target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """logits (B, S, P, P) attention logits of view v's patches over view 0's, target
    (B, S, P) from `patch_correspondence`. Returns (cross-entropy, top-1 accuracy)."""
    P = logits.shape[-1]
    lg, tg = logits.reshape(-1, P).float(), target.reshape(-1)
    valid = tg >= 0
    if not valid.any():
        z = logits.sum() * 0
        return z, z.detach()
    ce = F.cross_entropy(lg[valid], tg[valid])
    acc = (lg[valid].argmax(-1) == tg[valid]).float().mean()
    return ce, acc.detach()
