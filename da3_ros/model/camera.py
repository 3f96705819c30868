"""Camera encoder (pose conditioning) and decoder (camera head) of DA3, plus the
9-d pose encoding they share: [t (3), quaternion xyzw (4), fov_h, fov_w] of the
CAMERA-TO-WORLD pose; fovs in radians over the full image height / width.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from .vit import Block, Mlp


# ---------------------------------------------------------------- geometry
def invert_rigid(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms (..., 3|4, 4); keeps the input's row count."""
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    top = torch.cat((Rt, -Rt @ t), -1)
    return torch.cat((top, T[..., 3:, :]), -2)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) xyzw (any norm) -> rotation matrices (..., 3, 3)."""
    x, y, z, w = q.unbind(-1)
    s = 2.0 / (q * q).sum(-1)
    m = torch.stack((
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    ), -1)
    return m.reshape(q.shape[:-1] + (3, 3))


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) xyzw with w >= 0.

    Picks, per matrix, the best-conditioned of the four closed forms.
    """
    m = R.reshape(R.shape[:-2] + (9,))
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.unbind(-1)
    # squared magnitudes * 4 of (w, x, y, z)
    q2 = torch.stack((1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                      1 - m00 + m11 - m22, 1 - m00 - m11 + m22), -1)
    qa = torch.sqrt(q2.clamp_min(0))
    cands = torch.stack((
        torch.stack((qa[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01), -1),
        torch.stack((m21 - m12, qa[..., 1] ** 2, m10 + m01, m02 + m20), -1),
        torch.stack((m02 - m20, m10 + m01, qa[..., 2] ** 2, m12 + m21), -1),
        torch.stack((m10 - m01, m20 + m02, m21 + m12, qa[..., 3] ** 2), -1),
    ), -2) / (2.0 * qa.clamp_min(0.1))[..., None]
    best = qa.argmax(-1)
    wxyz = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4))).squeeze(-2)
    xyzw = wxyz[..., [1, 2, 3, 0]]
    return torch.where(xyzw[..., 3:] < 0, -xyzw, xyzw)


def encode_pose(c2w: torch.Tensor, intrinsics: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
    """c2w (..., 3|4, 4), intrinsics (..., 3, 3) pixels -> pose encoding (..., 9) fp32."""
    H, W = image_hw
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat((c2w[..., :3, 3], rotmat_to_quat(c2w[..., :3, :3]),
                      fov_h[..., None], fov_w[..., None]), -1).float()


def decode_pose(enc: torch.Tensor, image_hw: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pose encoding (..., 9) -> (c2w (..., 3, 4), intrinsics (..., 3, 3) pixels).

    Principal point exactly at the image centre (W/2, H/2).
    """
    H, W = image_hw
    c2w = torch.cat((quat_to_rotmat(enc[..., 3:7]), enc[..., :3, None]), -1)
    fy = (H / 2.0) / torch.clamp(torch.tan(enc[..., 7] / 2.0), 1e-6)
    fx = (W / 2.0) / torch.clamp(torch.tan(enc[..., 8] / 2.0), 1e-6)
    K = torch.zeros(enc.shape[:-1] + (3, 3), dtype=enc.dtype, device=enc.device)
    K[..., 0, 0], K[..., 1, 1] = fx, fy
    K[..., 0, 2], K[..., 1, 2], K[..., 2, 2] = W / 2, H / 2, 1.0
    return c2w, K


# ---------------------------------------------------------------- modules
class CameraEncoder(nn.Module):
    """Known cameras -> one token per view (replaces the learnt camera tokens).

    MLP on the pose encoding, LayerNorm, 4 attention blocks across the views of a
    batch item, LayerNorm. Always run in fp32.
    """

    def __init__(self, dim_out: int, dim_in: int = 9, trunk_depth: int = 4, num_heads: int = 16):
        super().__init__()
        self.pose_branch = Mlp(dim_in, dim_out // 2, dim_out)
        self.token_norm = nn.LayerNorm(dim_out, eps=1e-5)
        self.trunk = nn.Sequential(*[
            Block(dim_out, num_heads, 4.0, norm_eps=1e-5, init_values=0.01) for _ in range(trunk_depth)])
        self.trunk_norm = nn.LayerNorm(dim_out, eps=1e-5)

    def forward(self, w2c: torch.Tensor, intrinsics: torch.Tensor, image_hw: Tuple[int, int]) -> torch.Tensor:
        """w2c (B, S, 3|4, 4), intrinsics (B, S, 3, 3) in pixels of the network input -> (B, S, D)."""
        tok = self.token_norm(self.pose_branch(encode_pose(invert_rigid(w2c.float()), intrinsics.float(), image_hw)))
        return self.trunk_norm(self.trunk(tok))


class CameraDecoder(nn.Module):
    """Camera token (B, S, 2D) -> pose encoding (B, S, 9)."""

    def __init__(self, dim_in: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(dim_in, dim_in), nn.ReLU(), nn.Linear(dim_in, dim_in), nn.ReLU())
        self.fc_t = nn.Linear(dim_in, 3)
        self.fc_qvec = nn.Linear(dim_in, 4)
        self.fc_fov = nn.Sequential(nn.Linear(dim_in, 2), nn.ReLU())

    def forward(self, tok: torch.Tensor) -> torch.Tensor:
        f = self.backbone(tok.float())
        return torch.cat((self.fc_t(f), self.fc_qvec(f), self.fc_fov(f)), -1)
