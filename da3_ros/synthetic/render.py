"""A small procedural renderer: a textured room with boxes, ray cast in torch.

The world of the synthetic ground truth is z-up, metres; the room spans
x in [-5, 5], y in [-4, 4], z in [0, 3]. Cameras follow the optical-frame
convention (x right, y down, z forward). Rays are cast against axis-aligned
boxes in one vectorised torch pass for a batch of frames (CPU or GPU); with ray directions of unit
optical z, the ray parameter at the hit IS the z-depth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np
import torch

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


def _cell_noise(i: torch.Tensor, j: torch.Tensor, k: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Deterministic pseudo-random value in [0, 1) per integer cell (int64 hash, wraps)."""
    h = (i.long() * 73856093) ^ (j.long() * 19349663) ^ (k.long() * 83492791) ^ (seed.long() * 2654435761)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h >> 8) & 0xFFFF).float() / 65536.0


#: far-away empty box used to pad scenes to a common box count (never nearer than a wall)
_PAD = 1.0e6


def scene_tensors(scenes: Sequence[Scene], device="cpu", dtype=torch.float32) -> Dict[str, torch.Tensor]:
    """Stack scenes, padded to the largest box count: lo/hi (N, B, 3), colours (N, B, 6, 3),
    periods (N, B), seed (N,)."""
    nb = max(len(s.lo) for s in scenes)
    lo = torch.full((len(scenes), nb, 3), _PAD, dtype=torch.float64)
    hi = lo.clone()
    colours = torch.zeros((len(scenes), nb, 6, 3), dtype=torch.float64)
    periods = torch.ones((len(scenes), nb), dtype=torch.float64)
    for i, s in enumerate(scenes):
        b = len(s.lo)
        lo[i, :b], hi[i, :b] = torch.from_numpy(np.asarray(s.lo, np.float64)), torch.from_numpy(np.asarray(s.hi, np.float64))
        colours[i, :b] = torch.from_numpy(np.asarray(s.colours, np.float64))
        periods[i, :b] = torch.from_numpy(np.asarray(s.periods, np.float64))
    seed = torch.tensor([int(s.seed) for s in scenes], dtype=torch.int64)
    f = dict(device=device, dtype=dtype)
    return {"lo": lo.to(**f), "hi": hi.to(**f), "colours": colours.to(**f), "periods": periods.to(**f),
            "seed": seed.to(device)}


def render_batch(scene: Dict[str, torch.Tensor], c2w: torch.Tensor, intrinsics: torch.Tensor, width: int,
                 height: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Ray cast N cameras, camera n in scene n of `scene_tensors` (all on one device, one dtype).

    c2w (N, 4, 4), intrinsics (N, 3, 3) pixels. Returns rgb (N, H, W, 3) uint8 and z-depth
    (N, H, W) float32 metres. On a GPU thousands of frames per second: the training data.
    """
    dt, dev = scene["lo"].dtype, scene["lo"].device
    N = c2w.shape[0]
    c2w = c2w.to(dev, dt)
    K = intrinsics.to(dev, dt)
    v, u = torch.meshgrid(torch.arange(height, device=dev, dtype=dt), torch.arange(width, device=dev, dtype=dt),
                          indexing="ij")
    u, v = u.reshape(1, -1), v.reshape(1, -1)
    d_cam = torch.stack([(u - K[:, 0, 2, None]) / K[:, 0, 0, None], (v - K[:, 1, 2, None]) / K[:, 1, 1, None],
                         torch.ones_like(u).expand(N, -1)], -1)  # (N, P, 3)
    R, o = c2w[:, :3, :3], c2w[:, :3, 3]
    d = d_cam @ R.transpose(1, 2)  # world directions with unit optical z
    d = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    inv = 1.0 / d
    # slabs per axis: (N, B, P)
    tn, tf = [], []
    for a in range(3):
        t1 = (scene["lo"][:, :, a, None] - o[:, None, a, None]) * inv[:, None, :, a]
        t2 = (scene["hi"][:, :, a, None] - o[:, None, a, None]) * inv[:, None, :, a]
        tn.append(torch.minimum(t1, t2))
        tf.append(torch.maximum(t1, t2))
    t_enter = torch.maximum(torch.maximum(tn[0], tn[1]), tn[2])
    t_exit = torch.minimum(torch.minimum(tf[0], tf[1]), tf[2])
    # room (box 0): the camera is inside, the visible surface is the exit
    t_room = t_exit[:, 0]
    ax_room = torch.where(tf[0][:, 0] == t_room, 0, torch.where(tf[1][:, 0] == t_room, 1, 2))
    # solid boxes: the visible surface is the entry, if in front of the camera
    hit = (t_exit[:, 1:] >= t_enter[:, 1:]) & (t_enter[:, 1:] > 1e-4)
    t_box = torch.where(hit, t_enter[:, 1:], torch.full_like(t_enter[:, 1:], float("inf")))
    if t_box.shape[1]:
        t_best, best = t_box.min(dim=1)
        tn_best = [x[:, 1:].gather(1, best[:, None])[:, 0] for x in tn[:2]]
        ax_box = torch.where(tn_best[0] == t_best, 0, torch.where(tn_best[1] == t_best, 1, 2))
    else:
        t_best, best, ax_box = torch.full_like(t_room, float("inf")), torch.zeros_like(ax_room), ax_room
    use_box = t_best < t_room
    t = torch.where(use_box, t_best, t_room)
    box = torch.where(use_box, best + 1, 0)  # (N, P)
    axis = torch.where(use_box, ax_box, ax_room)
    p = o[:, None] + d * t[..., None]
    # the face's side: the normal opposes the ray, for boxes (outside) and the room (inside)
    sign_pos = d.gather(2, axis[..., None])[..., 0] < 0
    face = 2 * axis + sign_pos.long()
    base = scene["colours"][torch.arange(N, device=dev)[:, None], box, face]  # (N, P, 3)
    # texture: checker at the box's period plus value noise on a finer grid
    s1 = p.gather(2, ((axis + 1) % 3)[..., None])[..., 0]
    s2 = p.gather(2, ((axis + 2) % 3)[..., None])[..., 0]
    per = scene["periods"].gather(1, box)
    checker = torch.remainder(torch.floor(s1 / per) + torch.floor(s2 / per), 2)
    fine = 0.12
    noise = _cell_noise(torch.floor(s1 / fine), torch.floor(s2 / fine), box * 8 + face, scene["seed"][:, None])
    tone = (0.7 + 0.3 * checker) * (0.8 + 0.4 * noise.to(dt))
    light = torch.tensor([0.3, 0.5, 0.81], device=dev, dtype=dt)
    # |normal . light| = |light[axis]| for an axis-aligned face
    shade = 0.55 + 0.45 * light[axis].abs()
    rgb = (base * (tone * shade)[..., None] * 255.0).clamp(0, 255).to(torch.uint8)
    return rgb.reshape(N, height, width, 3), t.reshape(N, height, width).float()


def render(scene: Scene, c2w: np.ndarray, intrinsics: np.ndarray, width: int, height: int):
    """One frame on the CPU. Returns (rgb (H,W,3) uint8, z-depth (H,W) float32 metres)."""
    st = scene_tensors([scene])
    rgb, depth = render_batch(st, torch.from_numpy(np.asarray(c2w, np.float64))[None],
                              torch.from_numpy(np.asarray(intrinsics, np.float64))[None], width, height)
    return rgb[0].numpy(), depth[0].numpy()
