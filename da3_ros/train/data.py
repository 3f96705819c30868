"""Training data for the embedded `da3-tiny` network: multi-view clips from the
project's procedural renderer (`da3_ros.synthetic.render`).

A *clip* is one scene and one camera path rendered at 320x240 (the resolution of
the project's synthetic sequences), with exact z-depth, c2w and intrinsics. Two
kinds, mixed:

* "project": `make_scene(seed)` with one of the four project trajectories
  (forward, orbit, rotation, stop_and_go), a random stretch of it at a random
  frame stride and a random focal length;
* "random": a randomised room (size, box count, layout, colours, texture
  periods) with a random smooth camera path (translation, turning, pure
  rotation, stops) kept clear of the boxes, and a random focal length.

Training renders the frames on the GPU (`synthetic.render.render_batch`), so
every step sees fresh scenes and paths: `clip_spec` draws them on the CPU.

A *rig clip* (`rig_clip_spec`) is the same, seen by several cameras fixed on one
moving body (`synthetic.rig`): the demo's stereo pair (10 cm) and three-camera
ring, and random rigs (a stereo pair of 5-30 cm, a ring of 2-4 cameras, cameras
anywhere within 0.3 m turned up to 90 degrees); its views are rig frame by rig
frame in camera order, and a window takes whole rig frames (`rig_window_views`),
so the network sees several cameras of one instant, as the node's rig windows show.

Held-out set: `HELD_OUT` lists project sequences (trajectory, seed) whose seeds are
never drawn for training (training seeds are >= `TRAIN_SEED_BASE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..geometry.transforms import T_BODY_OPTICAL, inv_se3
from ..synthetic.render import Scene, make_scene
from ..synthetic.rig import RIG_LAYOUTS, mount_to_base_optical
from ..synthetic.trajectories import HELD_OUT, TRAJECTORIES, look_at

HELD_OUT_SEEDS = frozenset(s for _, s in HELD_OUT)
#: training clips use scene seeds >= this (disjoint from HELD_OUT_SEEDS and from
#: the small seeds the tests use)
TRAIN_SEED_BASE = 1_000_000
NATIVE_W, NATIVE_H = 320, 240
#: frames per rendered clip
CLIP_FRAMES = 24
#: one frame of a 200-frame project sequence, in normalised trajectory time
PROJECT_STEP = 1.0 / 199.0


# ------------------------------------------------------------------ scenes
def random_scene(rng: np.random.Generator, seed: int, path_xyz: np.ndarray) -> Scene:
    """A room of random size with random boxes that stay clear of `path_xyz` (P, 3)."""
    half = np.array([rng.uniform(2.5, 6.0), rng.uniform(2.0, 5.0)])
    centre = rng.uniform(-0.5, 0.5, 2)
    height = rng.uniform(2.4, 4.0)
    lo = [np.array([centre[0] - half[0], centre[1] - half[1], 0.0])]
    hi = [np.array([centre[0] + half[0], centre[1] + half[1], height])]
    n_target = int(rng.integers(2, 16))
    for _ in range(n_target * 6):
        if len(lo) - 1 >= n_target:
            break
        size = rng.uniform([0.3, 0.3, 0.2], [1.6, 1.6, height])
        if rng.uniform() < 0.3:  # floating shelf / beam
            z0 = rng.uniform(0.3, height - 0.3)
            size[2] = rng.uniform(0.1, 0.5)
        else:
            z0 = 0.0
        c = np.array([rng.uniform(lo[0][0], hi[0][0]), rng.uniform(lo[0][1], hi[0][1])])
        b_lo = np.array([c[0] - size[0] / 2, c[1] - size[1] / 2, z0])
        b_hi = np.array([c[0] + size[0] / 2, c[1] + size[1] / 2, min(z0 + size[2], height)])
        # keep 0.35 m clear of every camera position
        m = 0.35
        inside = np.all((path_xyz > b_lo - m) & (path_xyz < b_hi + m), axis=1)
        if inside.any():
            continue
        lo.append(b_lo)
        hi.append(b_hi)
    n = len(lo)
    colours = rng.uniform(0.1, 1.0, size=(n, 6, 3))
    if rng.uniform() < 0.3:  # desaturated rooms
        g = colours.mean(-1, keepdims=True)
        colours = g + rng.uniform(0.0, 0.5) * (colours - g)
    periods = rng.uniform(0.12, 1.0, size=n)
    return Scene(np.array(lo), np.array(hi), colours, periods, int(seed))


def random_path(rng: np.random.Generator, n: int, room_lo: np.ndarray, room_hi: np.ndarray) -> np.ndarray:
    """(n, 4, 4) smooth c2w inside the box [room_lo, room_hi] (with a margin)."""
    margin = 0.6
    lo, hi = room_lo + margin, room_hi - margin
    lo[2], hi[2] = 0.4, min(room_hi[2] - 0.3, 2.3)
    mode = rng.choice(["translate", "translate", "rotate", "stopgo"])
    step = rng.uniform(0.005, 0.06)  # metres per frame
    t = np.arange(n, dtype=np.float64)
    p0 = rng.uniform(lo, hi)
    heading = rng.uniform(-np.pi, np.pi)
    direction = np.array([np.cos(heading), np.sin(heading), rng.uniform(-0.15, 0.15)])
    speed = np.full(n, step)
    if mode == "rotate":
        speed[:] = rng.uniform(0.0, 0.003)
    elif mode == "stopgo":
        speed *= (np.floor(t / rng.integers(4, 10)) % 2 == 0)
    dist = np.concatenate([[0.0], np.cumsum(speed[1:])])
    wob = rng.uniform(0, 0.3) * np.sin(t * rng.uniform(0.05, 0.3) + rng.uniform(0, 6))
    side = np.array([-direction[1], direction[0], 0.0])
    eye = p0 + dist[:, None] * direction + wob[:, None] * side
    eye = np.clip(eye, lo, hi)
    # mostly look into the room (towards its centre), not at the nearest wall
    to_centre = np.arctan2(-p0[1], -p0[0])
    yaw0 = (to_centre if rng.uniform() < 0.7 else heading) + rng.uniform(-0.9, 0.9)
    yaw_rate = rng.uniform(-0.06, 0.06) if mode != "rotate" else rng.uniform(-0.1, 0.1)
    yaw = yaw0 + yaw_rate * t + rng.uniform(0, 0.4) * np.sin(t * rng.uniform(0.05, 0.25))
    pitch = rng.uniform(-0.5, 0.25) + rng.uniform(0, 0.15) * np.sin(t * rng.uniform(0.05, 0.3))
    out = []
    for e, y, p in zip(eye, yaw, pitch):
        d = np.array([np.cos(p) * np.cos(y), np.cos(p) * np.sin(y), np.sin(p)])
        T = look_at(e, e + d)
        roll = rng.normal(0, 0.03)
        if roll:
            c, s = np.cos(roll), np.sin(roll)
            T[:3, :3] = T[:3, :3] @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        out.append(T)
    return np.array(out)


def random_intrinsics(rng: np.random.Generator, w: int = NATIVE_W, h: int = NATIVE_H) -> np.ndarray:
    f = w * rng.uniform(0.45, 1.1)  # about 50 to 96 degrees horizontal fov
    fy = f * rng.uniform(0.97, 1.03)
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, fy, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------ clips
@dataclass
class ClipSpec:
    """What a clip shows, before rendering: scene, camera path and intrinsics."""
    scene: Scene
    c2w: np.ndarray  # (N, 4, 4) float64
    K: np.ndarray  # (3, 3) pixels, pixel-centre convention of the renderer
    kind: str
    seed: int
    #: cameras per rig frame (1: a single camera); c2w is rig frame by rig frame in camera order
    cameras: int = 1

    @property
    def frames(self) -> int:
        """Rig frames (frames of a single camera)."""
        return self.c2w.shape[0] // self.cameras


def _check_seed(seed: int) -> None:
    if seed in HELD_OUT_SEEDS or seed < TRAIN_SEED_BASE:
        raise ValueError(f"seed {seed} is reserved (held-out / tests); training seeds are >= {TRAIN_SEED_BASE}")


def clip_spec(seed: int, n: int = CLIP_FRAMES) -> ClipSpec:
    """One training clip's scene and path, deterministic in `seed` (never a held-out
    seed). About a millisecond on a CPU; the frames are rendered where they are used
    (`render_batch` on the training GPU)."""
    _check_seed(seed)
    rng = np.random.default_rng([seed, 42])
    K = random_intrinsics(rng)
    if rng.uniform() < 0.45:
        kind = "project"
        scene = make_scene(seed)
        name = rng.choice(sorted(TRAJECTORIES))
        stride = int(rng.integers(1, 6))
        span = (n - 1) * stride * PROJECT_STEP
        s0 = rng.uniform(0.0, max(1.0 - span, 0.0))
        s = np.clip(s0 + np.arange(n) * stride * PROJECT_STEP, 0.0, 1.0)
        c2w = TRAJECTORIES[name](s, seed)
    else:
        kind = "random"
        half = np.array([rng.uniform(2.5, 6.0), rng.uniform(2.0, 5.0), 0.0])
        room_lo = np.array([-half[0], -half[1], 0.0])
        room_hi = np.array([half[0], half[1], rng.uniform(2.4, 4.0)])
        c2w = random_path(rng, n, room_lo, room_hi)
        scene = random_scene(rng, seed, c2w[:, :3, 3])
        # the room from the path's box (random_scene draws its own size; use ours)
        scene.lo[0], scene.hi[0] = room_lo, room_hi
    return ClipSpec(scene, c2w, K, kind, seed)


# ------------------------------------------------------------------ rigs
def random_rig(rng: np.random.Generator) -> Tuple[str, List[np.ndarray]]:
    """(kind, T_base_optical of each camera, metres): the demo's two rigs (their
    scenes are held out, not their mounts) or a random one."""
    u = rng.uniform()
    if u < 0.15:
        return "rig-stereo", [mount_to_base_optical(yaw, pos) for _, yaw, pos in RIG_LAYOUTS["stereo"]]
    if u < 0.3:
        return "rig-three", [mount_to_base_optical(yaw, pos) for _, yaw, pos in RIG_LAYOUTS["three"]]
    if u < 0.6:  # a stereo pair: side by side (sometimes stacked), nearly parallel
        b = rng.uniform(0.05, 0.3)
        a = rng.uniform(0, 2 * np.pi) if rng.uniform() < 0.2 else rng.normal(0.0, 0.15)
        half = 0.5 * b * np.array([0.0, np.cos(a), np.sin(a)])
        yaw = rng.normal(0.0, 2.0, 2)
        if rng.uniform() < 0.5:  # left first or right first
            half = -half
        return "rig-pair", [mount_to_base_optical(yaw[0], half), mount_to_base_optical(yaw[1], -half)]
    if u < 0.85:  # a ring looking out, 2-4 cameras
        n = int(rng.integers(2, 5))
        step = rng.uniform(25.0, 75.0)
        radius = rng.uniform(0.06, 0.25)
        yaws = (np.arange(n) - (n - 1) / 2) * step * (1 if rng.uniform() < 0.5 else -1)
        return "rig-ring", [mount_to_base_optical(y, (radius * np.cos(np.radians(y)), radius * np.sin(np.radians(y)), 0.0))
                            for y in yaws]
    n = int(rng.integers(2, 5))  # anywhere within 0.3 m, turned up to 90 degrees
    return "rig-free", [mount_to_base_optical(rng.uniform(-90, 90), rng.uniform(-0.15, 0.15, 3)) for _ in range(n)]


def rig_clip_spec(seed: int, n: int = CLIP_FRAMES) -> ClipSpec:
    """A rig clip (module docstring): `n` rig frames of a random rig on a project
    trajectory or a random path through a random room; deterministic in `seed`."""
    _check_seed(seed)
    rng = np.random.default_rng([seed, 43])
    K = random_intrinsics(rng)
    kind, mounts = random_rig(rng)
    if rng.uniform() < 0.45:
        scene = make_scene(seed)
        name = rng.choice(sorted(TRAJECTORIES))
        stride = int(rng.integers(1, 6))
        span = (n - 1) * stride * PROJECT_STEP
        s0 = rng.uniform(0.0, max(1.0 - span, 0.0))
        body = TRAJECTORIES[name](np.clip(s0 + np.arange(n) * stride * PROJECT_STEP, 0.0, 1.0), seed)
        body = body @ inv_se3(T_BODY_OPTICAL)
        c2w = np.stack([b @ T for b in body for T in mounts])
    else:
        half = np.array([rng.uniform(2.5, 6.0), rng.uniform(2.0, 5.0), 0.0])
        room_lo = np.array([-half[0], -half[1], 0.0])
        room_hi = np.array([half[0], half[1], rng.uniform(2.4, 4.0)])
        body = random_path(rng, n, room_lo, room_hi) @ inv_se3(T_BODY_OPTICAL)
        c2w = np.stack([b @ T for b in body for T in mounts])
        scene = random_scene(rng, seed, c2w[:, :3, 3])
        scene.lo[0], scene.hi[0] = room_lo, room_hi
    return ClipSpec(scene, c2w, K, kind, seed, cameras=len(mounts))


def rig_window_views(spec: ClipSpec, S: int, rng, easy: bool = False) -> List[int]:
    """S view indices into a rig clip: whole rig frames (the last one cut to fit S),
    at a random stride, start and camera order; half the time shuffled (the
    network picks its reference view among all of them at inference)."""
    cams = spec.cameras
    r = -(-S // cams)  # rig frames
    n = spec.frames
    max_stride = max(1, min(2 if easy else 4, (n - 1) // max(r - 1, 1)))
    stride = rng.randint(1, max_stride)
    start = rng.randint(0, max(n - 1 - (r - 1) * stride, 0))
    order = list(range(cams))
    rng.shuffle(order)
    idx = [(start + j * stride) * cams + c for j in range(r) for c in order][:S]
    if rng.random() < 0.5:
        rng.shuffle(idx)
    return idx


def spec_loop(q, stop, first_seed: int, seed_step: int, n: int = CLIP_FRAMES, rig: bool = False) -> None:
    """Worker process: put clip specs (rig clips with `rig`) of seeds first_seed,
    first_seed + seed_step, ... into the bounded queue `q` (blocking while it is
    full) until `stop` is set."""
    import queue

    make = rig_clip_spec if rig else clip_spec
    seed = first_seed
    while not stop.is_set():
        spec = make(seed, n)
        while not stop.is_set():
            try:
                q.put(spec, timeout=0.5)
                break
            except queue.Full:
                continue
        seed += seed_step


def held_out_sequences(n_frames: int = 60, width: int = NATIVE_W, height: int = NATIVE_H,
                       device: Optional[str] = None) -> List:
    """The held-out project sequences (never trained on); `device` renders them there."""
    from ..synthetic.sequence import make_sequence

    return [make_sequence(name, n_frames, width, height, seed, device=device) for name, seed in HELD_OUT]


def held_out_rigs(n_frames: int = 60, width: int = NATIVE_W, height: int = NATIVE_H,
                  layouts: Tuple[str, ...] = ("stereo", "three"), trajectories: Tuple[str, ...] = ("orbit", "forward"),
                  device: Optional[str] = None) -> List:
    """The demo's rigs on held-out scenes (never trained on): each layout on each
    held-out trajectory with its held-out seed, as `make demo --rig` renders them."""
    from ..synthetic.rig import make_rig_sequence

    seeds = dict(HELD_OUT)
    return [make_rig_sequence(layout, t, n_frames=n_frames, width=width, height=height, seed=seeds[t], jitter=0.002,
                              device=device) for layout in layouts for t in trajectories]


__all__ = ["HELD_OUT", "HELD_OUT_SEEDS", "TRAIN_SEED_BASE", "ClipSpec", "clip_spec", "spec_loop", "rig_clip_spec",
           "rig_window_views", "random_rig", "held_out_rigs",
           "random_scene", "random_path", "random_intrinsics", "held_out_sequences"]
