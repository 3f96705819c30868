"""Camera paths through the synthetic room (c2w of the optical frame, metres).

Each is a function of the normalised time s in [0, 1] so any frame count gives
the same path; `seed` perturbs phases slightly.
"""

from __future__ import annotations

import numpy as np

UP = np.array([0.0, 0.0, 1.0])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = UP) -> np.ndarray:
    """c2w (optical frame: x right, y down, z forward) at `eye` looking at `target`."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def _yaw_pitch_dir(yaw: float, pitch: float) -> np.ndarray:
    return np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])


def forward(s: np.ndarray, seed: int = 0) -> np.ndarray:
    ph = 0.3 * np.random.default_rng([seed, 1]).uniform()
    out = []
    for si in s:
        eye = np.array([-3.0 + 4.5 * si, 0.3 * np.sin(2 * np.pi * si + ph), 1.4 + 0.1 * np.sin(4 * np.pi * si)])
        yaw = 0.35 * np.sin(2 * np.pi * si + 0.5 + ph)
        out.append(look_at(eye, eye + _yaw_pitch_dir(yaw, -0.1)))
    return np.array(out)


def orbit(s: np.ndarray, seed: int = 0) -> np.ndarray:
    ph = 0.5 * np.random.default_rng([seed, 2]).uniform()
    out = []
    for si in s:
        th = ph + 1.5 * np.pi * si
        eye = np.array([2.5 * np.cos(th), 2.5 * np.sin(th), 1.6 + 0.15 * np.sin(3 * np.pi * si)])
        out.append(look_at(eye, np.array([0.0, 0.0, 0.6])))
    return np.array(out)


def rotation(s: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pure rotation about a fixed camera centre (zero baseline)."""
    ph = 0.5 * np.random.default_rng([seed, 3]).uniform()
    eye = np.array([0.5, -0.5, 1.5])
    out = []
    for si in s:
        yaw = np.radians(70.0) * np.sin(2 * np.pi * si + ph)
        pitch = np.radians(-10.0 + 10.0 * np.sin(4 * np.pi * si))
        out.append(look_at(eye, eye + _yaw_pitch_dir(yaw, pitch)))
    return np.array(out)


def stop_and_go(s: np.ndarray, seed: int = 0) -> np.ndarray:
    """Forward motion in three legs separated by two full stops (a static
    camera for ~1/6 of the sequence each)."""
    ph = 0.3 * np.random.default_rng([seed, 4]).uniform()
    fine = np.linspace(0, 1, 2001)
    speed = (np.floor(fine * 5) % 2 == 0).astype(float)  # move, stop, move, stop, move
    progress = np.concatenate([[0.0], np.cumsum(speed[1:] * np.diff(fine))])
    progress /= progress[-1]
    out = []
    for si in s:
        p = np.interp(si, fine, progress)
        eye = np.array([-3.0 + 4.5 * p, 0.5 * np.sin(np.pi * p + ph), 1.45])
        yaw = 0.3 * np.sin(2 * np.pi * p + ph)
        out.append(look_at(eye, eye + _yaw_pitch_dir(yaw, -0.12)))
    return np.array(out)


TRAJECTORIES = {"forward": forward, "orbit": orbit, "rotation": rotation, "stop_and_go": stop_and_go}


#: (trajectory, seed) of the held-out sequences, never trained on (the training
#: clips' seeds are disjoint: da3_ros.train.data): make_sequence(name, n, 320, 240, seed=seed)
HELD_OUT = (("forward", 9001), ("orbit", 9002), ("rotation", 9003), ("stop_and_go", 9004))
