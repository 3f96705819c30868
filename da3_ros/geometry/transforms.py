"""Rigid and similarity transforms on 4x4 matrices (float64).

Conventions: `c2w` maps optical-frame points (x right, y down, z forward) into
the world; `w2c` is its inverse. A similarity (Sim(3)) is kept as (scale,
rotation, translation) and applied as x' = scale * R @ x + t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


#: REP 103: an optical frame (x right, y down, z forward) seen from its camera
#: body frame (x forward, y left, z up); maps optical coordinates into the body.
T_BODY_OPTICAL = np.array([
    [0.0, 0.0, 1.0, 0.0],
    [-1.0, 0.0, 0.0, 0.0],
    [0.0, -1.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
])


def inv_se3(T: np.ndarray) -> np.ndarray:
    """Inverse of one (4,4) or a stack (...,4,4) of rigid transforms."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    out = np.zeros_like(T)
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", Rt, t)
    out[..., 3, 3] = 1.0
    return out


def make_se3(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices (...,3,3) in degrees (robust near 0 and 180)."""
    R = np.asarray(R, dtype=np.float64)
    # atan2(sin, cos) keeps full precision near 0 (arccos of the trace does not)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    axis = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    sin = np.linalg.norm(axis, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def project_to_so3(M: np.ndarray) -> np.ndarray:
    """Nearest rotation (Frobenius) to a 3x3 matrix."""
    U, _, Vt = np.linalg.svd(M)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt)) or 1.0
    return U @ D @ Vt


def is_rigid(T: np.ndarray, tol: float = 1e-4) -> bool:
    """True when T is a finite 4x4 rigid transform (orthonormal, det +1)."""
    T = np.asarray(T)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return (
        np.allclose(R @ R.T, np.eye(3), atol=tol)
        and abs(np.linalg.det(R) - 1.0) < tol
        and np.allclose(T[3], [0, 0, 0, 1], atol=tol)
    )


@dataclass(frozen=True)
class Sim3:
    """x_dst = scale * R @ x_src + t."""

    scale: float
    R: np.ndarray
    t: np.ndarray

    @staticmethod
    def identity() -> "Sim3":
        return Sim3(1.0, np.eye(3), np.zeros(3))

    def apply_points(self, x: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(x) @ self.R.T) + self.t

    def apply_c2w(self, c2w: np.ndarray) -> np.ndarray:
        """Map camera poses (...,4,4) from the source into the destination frame;
        the result stays rigid (its translation is scaled, its rotation is not)."""
        c2w = np.asarray(c2w, dtype=np.float64)
        out = c2w.copy()
        out[..., :3, :3] = np.einsum("ij,...jk->...ik", self.R, c2w[..., :3, :3])
        out[..., :3, 3] = self.scale * np.einsum("ij,...j->...i", self.R, c2w[..., :3, 3]) + self.t
        return out

    def inverse(self) -> "Sim3":
        Rt = self.R.T
        return Sim3(1.0 / self.scale, Rt, -(Rt @ self.t) / self.scale)

    def compose(self, other: "Sim3") -> "Sim3":
        """self o other (apply other first)."""
        return Sim3(self.scale * other.scale, self.R @ other.R, self.scale * self.R @ other.t + self.t)

    def matrix(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = self.scale * self.R
        T[:3, 3] = self.t
        return T


def c2w_to_tum(c2w: np.ndarray) -> np.ndarray:
    """(N,4,4) -> (N,7) tx ty tz qx qy qz qw (TUM order)."""
    c2w = np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)
    q = Rotation.from_matrix(c2w[:, :3, :3]).as_quat()  # x y z w
    return np.concatenate([c2w[:, :3, 3], q], axis=1)


def tum_to_c2w(rows: np.ndarray) -> np.ndarray:
    """(N,7) tx ty tz qx qy qz qw -> (N,4,4)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
    out = np.tile(np.eye(4), (len(rows), 1, 1))
    out[:, :3, :3] = Rotation.from_quat(rows[:, 3:7]).as_matrix()
    out[:, :3, 3] = rows[:, :3]
    return out
