"""A small procedural renderer: a textured room with boxes, ray cast on the CPU.

The world of the synthetic ground truth is z-up, metres; the room spans
x in [-5, 5], y in [-4, 4], z in [0, 3]. Cameras follow the optical-frame
convention (x right, y down, z forward). Rays are cast against axis-aligned
boxes in one vectorised numpy pass per frame; with ray directions of unit
optical z, the ray parameter at the hit IS the z-depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROOM_LO = np.array([-5.0, -4.0, 0.0])
ROOM_HI = np.array([5.0, 4.0, 3.0])


@dataclass
class Scene:
    #: (B,3) box corners in metres; box 0 is the room (seen from inside)
    lo: np.ndarray
    hi: np.ndarray
    #: (B, 6, 3) base colour per box face (face = 2*axis + (0 for -, 1 for +)), 0..1
    colours: np.ndarray
    #: per-box texture period in metres
    periods: np.ndarray
    seed: int


def make_scene(seed: int = 0) -> Scene:
    """The room plus boxes kept clear of the camera paths of `trajectories`
    (low boxes below camera height, tall pillars only in the corners)."""
    rng = np.random.default_rng([seed, 7])
    # (centre x, centre y, size x, size y, height)
    layout = [
        (0.0, 0.0, 1.0, 1.0, 0.9),
        (2.0, 2.0, 1.0, 0.8, 0.8),
        (-2.0, -2.2, 1.2, 0.9, 1.0),
        (1.5, -2.6, 0.8, 0.8, 0.6),
        (-1.5, 2.4, 0.9, 1.1, 0.7),
        (3.2, 0.2, 0.7, 1.2, 0.5),
        (-4.3, 3.3, 0.8, 0.8, 2.6),
        (4.3, -3.3, 0.8, 0.8, 2.6),
        (4.3, 3.3, 0.8, 0.8, 2.2),
    ]
    lo = [ROOM_LO]
    hi = [ROOM_HI]
    for cx, cy, sx, sy, h in layout:
        j = rng.uniform(-0.1, 0.1, size=3)
        c = np.array([cx + j[0], cy + j[1]])
        half = np.array([sx, sy]) / 2
        lo.append(np.array([*(c - half), 0.0]))
        hi.append(np.array([*(c + half), h * (1 + 0.1 * j[2])]))
    n = len(lo)
    colours = rng.uniform(0.25, 0.95, size=(n, 6, 3))
    periods = rng.uniform(0.25, 0.6, size=n)
    return Scene(np.array(lo), np.array(hi), colours, periods, seed)


def _cell_noise(i: np.ndarray, j: np.ndarray, k: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ (k.astype(np.int64) * 83492791) ^ (seed * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 8) & 0xFFFF).astype(np.float32) / 65536.0


def render(scene: Scene, c2w: np.ndarray, intrinsics: np.ndarray, width: int, height: int):
    """Returns (rgb (H,W,3) uint8, z-depth (H,W) float32 metres)."""
    K = intrinsics
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1).reshape(-1, 3)
    R = c2w[:3, :3].astype(np.float32)
    o = c2w[:3, 3].astype(np.float32)
    d = d_cam @ R.T  # (P,3) world directions with unit optical z
    d = np.where(np.abs(d) < 1e-9, 1e-9, d)
    inv = 1.0 / d
    P = len(d)
    # per axis (3 separate (B,P) arrays: numpy reduces a tiny last axis slowly)
    tn, tf = [], []
    for a in range(3):
        t1 = (scene.lo[:, a, None].astype(np.float32) - o[a]) * inv[None, :, a]
        t2 = (scene.hi[:, a, None].astype(np.float32) - o[a]) * inv[None, :, a]
        tn.append(np.minimum(t1, t2))
        tf.append(np.maximum(t1, t2))
    t_enter = np.maximum(np.maximum(tn[0], tn[1]), tn[2])  # (B,P)
    t_exit = np.minimum(np.minimum(tf[0], tf[1]), tf[2])
    # room (index 0): the camera is inside, the visible surface is the exit
    t_room = t_exit[0]
    ax_room = np.where(tf[0][0] == t_room, 0, np.where(tf[1][0] == t_room, 1, 2))
    # solid boxes: visible surface is the entry, if in front of the camera
    hit = (t_exit[1:] >= t_enter[1:]) & (t_enter[1:] > 1e-4)
    t_box = np.where(hit, t_enter[1:], np.inf)
    best = t_box.argmin(axis=0)
    cols = np.arange(P)
    t_best = t_box[best, cols]
    use_box = t_best < t_room
    t = np.where(use_box, t_best, t_room)
    box = np.where(use_box, best + 1, 0)
    ax_box = np.where(tn[0][1:][best, cols] == t_best, 0, np.where(tn[1][1:][best, cols] == t_best, 1, 2))
    axis = np.where(use_box, ax_box, ax_room)
    p = o + d * t[:, None]
    # the face's side: for a box seen from outside, the normal opposes the ray;
    # for the room seen from inside, it also opposes the ray
    sign_pos = d[np.arange(len(d)), axis] < 0  # normal points +axis
    face = 2 * axis + sign_pos.astype(np.int64)
    base = scene.colours[box, face].astype(np.float32)
    # texture: checker at the box's period plus value noise on a finer grid
    a1 = (axis + 1) % 3
    a2 = (axis + 2) % 3
    idx = np.arange(len(p))
    s1 = p[idx, a1]
    s2 = p[idx, a2]
    per = scene.periods[box].astype(np.float32)
    checker = ((np.floor(s1 / per) + np.floor(s2 / per)) % 2).astype(np.float32)
    fine = 0.12
    noise = _cell_noise(np.floor(s1 / fine), np.floor(s2 / fine), box * 8 + face, scene.seed)
    tone = (0.7 + 0.3 * checker) * (0.8 + 0.4 * noise)
    normal = np.zeros_like(p)
    normal[idx, axis] = np.where(sign_pos, 1.0, -1.0)
    light = np.array([0.3, 0.5, 0.81], dtype=np.float32)
    shade = 0.55 + 0.45 * np.abs(normal @ light)
    rgb = np.clip(base * (tone * shade)[:, None] * 255.0, 0, 255).astype(np.uint8)
    return rgb.reshape(height, width, 3), t.reshape(height, width).astype(np.float32)
