"""Test models behind the `WindowModel` contract, driven by a synthetic
sequence's exact ground truth.

`OracleModel` answers like a perfect DA3: per window, poses relative to the
window's reference view (window index 0 unless told otherwise), at an
arbitrary per-window scale (unless metric), exact depth and intrinsics.
`NoisyOracleModel` adds DA3-like errors, seeded: a per-window scale, pose
noise, per-frame depth bias and per-pixel noise, and low-confidence outliers.
Both find the ground-truth frame of a `Frame` by its stamp (in a
`RigSequence`, by its camera and stamp), so a window may hold views of several
cameras.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from ..geometry.align import DegenerateAlignment, umeyama
from ..geometry.transforms import inv_se3
from ..stream.interface import Frame, WindowPrediction
from .rig import RigSequence, load_ground_truth
from .sequence import SyntheticSequence


class OracleHandle:
    """The per-frame cache of the oracle: just the ground-truth index (kept as
    an object so tests can count live handles with weak references)."""

    __slots__ = ("gt_index", "stamp", "__weakref__")

    def __init__(self, gt_index: int, stamp: float):
        self.gt_index = gt_index
        self.stamp = stamp


@dataclass
class OracleConfig:
    #: "first" (window index 0, what a DA3 with ref strategy "first" does),
    #: "middle", "last" or "random" (seeded): which view is the window frame
    reference: str = "first"
    #: per-window scale drawn log-uniformly in [1/max_scale, max_scale]; 1 = none
    max_scale: float = 2.0
    #: True: answer in metres (scale 1), like a metric model
    metric: bool = False
    seed: int = 0


class OracleModel:
    """Exact answers from a SyntheticSequence or a RigSequence (or a folder
    written by `write_sequence` or `write_rig_sequence`)."""

    def __init__(self, sequence: "SyntheticSequence | RigSequence | str", config: Optional[OracleConfig] = None,
                 **overrides):
        self.seq = load_ground_truth(sequence) if isinstance(sequence, (str, os.PathLike)) else sequence
        cfg = config or OracleConfig()
        for k, v in overrides.items():
            setattr(cfg, k, v)
        self.config = cfg
        self.metric = bool(cfg.metric)
        self.name = f"oracle({self.seq.name}, ref={cfg.reference}, {'metric' if cfg.metric else 'relative'})"
        self._live: "weakref.WeakSet[OracleHandle]" = weakref.WeakSet()
        self.n_predict = 0
        self.last_window_scale = 1.0

    # -- WindowModel --------------------------------------------------------
    def encode(self, frame: Frame) -> OracleHandle:
        h = OracleHandle(self.seq.index_of_frame(frame), frame.stamp)
        self._live.add(h)
        return h

    def predict(
        self,
        frames: Sequence[Frame],
        handles: Sequence[Any],
        decode: Sequence[int],
        intrinsics: Optional[np.ndarray] = None,
        c2w: Optional[np.ndarray] = None,
    ) -> WindowPrediction:
        if len(frames) != len(handles) or not frames:
            raise ValueError("predict needs one handle per frame and at least one frame")
        self.n_predict += 1
        gt_idx = np.array([h.gt_index for h in handles])
        rng = np.random.default_rng([self.config.seed, self.n_predict, *gt_idx.tolist()])
        gt_c2w = self.seq.c2w[gt_idx]
        S = len(frames)
        if c2w is not None and intrinsics is not None:
            out_c2w, scale = self._conditioned(np.asarray(c2w, dtype=np.float64), gt_c2w)
            metric_out = True  # the caller's unit (external odometry: metres)
            conditioned = True
        else:
            ref = self._reference(S, rng)
            scale = 1.0 if self.config.metric or self.config.max_scale <= 1.0 else float(
                np.exp(rng.uniform(-np.log(self.config.max_scale), np.log(self.config.max_scale)))
            )
            out_c2w = inv_se3(gt_c2w[ref]) @ gt_c2w
            out_c2w[:, :3, 3] *= scale
            metric_out = self.config.metric
            conditioned = False
        self.last_window_scale = scale
        K = self.seq.view_intrinsics(gt_idx)
        depth, conf = {}, {}
        for j in decode:
            d = self.seq.depth[gt_idx[j]]
            depth[j] = (d * np.float32(scale)).astype(np.float32)
            # DA3-like confidence (>= 1), lower far away
            conf[j] = (1.0 + 10.0 / (1.0 + d)).astype(np.float32)
        pred = WindowPrediction(out_c2w, K, depth, conf, np.ones(S), metric_out, {"scale": scale, "conditioned": conditioned})
        return self._perturb(pred, gt_idx, rng)

    # -- helpers ------------------------------------------------------------
    @property
    def live_handles(self) -> int:
        """Handles not yet freed by the caller (for memory tests)."""
        return len(self._live)

    def _reference(self, S: int, rng: np.random.Generator) -> int:
        r = self.config.reference
        if r == "first":
            return 0
        if r == "middle":
            return S // 2
        if r == "last":
            return S - 1
        if r == "random":
            return int(rng.integers(S))
        raise ValueError(f"unknown reference {r!r}")

    def _conditioned(self, c2w_given: np.ndarray, gt_c2w: np.ndarray):
        """Pose-conditioned answer: the caller's poses back, depth in the
        caller's unit (the scale between the caller's frame and the ground
        truth, from the camera centres; 1 when they do not determine it)."""
        try:
            scale = umeyama(gt_c2w[:, :3, 3], c2w_given[:, :3, 3], with_scale=True).scale
            spread = np.ptp(gt_c2w[:, :3, 3], axis=0).max()
            if spread < 1e-3 or not np.isfinite(scale):
                scale = 1.0
        except DegenerateAlignment:
            scale = 1.0
        return c2w_given.copy(), float(scale)

    def _perturb(self, pred: WindowPrediction, gt_idx: np.ndarray, rng: np.random.Generator) -> WindowPrediction:
        return pred


@dataclass
class NoiseConfig:
    #: pose noise per non-reference view: rotation (degrees) and translation
    #: (as a fraction of the window's median depth), standard deviations
    rot_deg: float = 0.2
    trans_rel: float = 0.003
    #: per-frame multiplicative depth bias and per-pixel relative noise (std)
    depth_bias: float = 0.005
    depth_noise: float = 0.01
    #: fraction of pixels that are outliers (depth x U(0.3, 3), confidence ~1)
    outlier_fraction: float = 0.02
    #: focal length noise, relative std
    focal_rel: float = 0.005


class NoisyOracleModel(OracleModel):
    """The oracle with DA3-like errors (seeded, deterministic for the same
    sequence of calls)."""

    def __init__(self, sequence, config: Optional[OracleConfig] = None, noise: Optional[NoiseConfig] = None, **overrides):
        super().__init__(sequence, config, **overrides)
        self.noise = noise or NoiseConfig()
        self.name = "noisy-" + self.name

    def _perturb(self, pred: WindowPrediction, gt_idx: np.ndarray, rng: np.random.Generator) -> WindowPrediction:
        n = self.noise
        S = len(gt_idx)
        scale = pred.extras["scale"]
        med_depth = float(np.median(self.seq.depth[gt_idx[0]])) * scale
        c2w = pred.c2w.copy()
        conditioned = pred.extras["conditioned"]  # poses were given: answer with them
        if not conditioned:
            # the reference view (identity) stays exact, the others wobble
            for j in range(S):
                if np.allclose(c2w[j], np.eye(4)):
                    continue
                dR = Rotation.from_rotvec(np.radians(n.rot_deg) * rng.standard_normal(3)).as_matrix()
                c2w[j, :3, :3] = dR @ c2w[j, :3, :3]
                c2w[j, :3, 3] += n.trans_rel * med_depth * rng.standard_normal(3)
        K = pred.intrinsics.copy()
        f = 1.0 + n.focal_rel * rng.standard_normal(S)
        K[:, 0, 0] *= f
        K[:, 1, 1] *= f
        depth, conf = {}, {}
        for j, d in pred.depth.items():
            bias = 1.0 + n.depth_bias * rng.standard_normal()
            noisy = d * bias * (1.0 + n.depth_noise * rng.standard_normal(d.shape)).astype(np.float32)
            c = pred.confidence[j].copy()
            out = rng.random(d.shape) < n.outlier_fraction
            noisy[out] = d[out] * rng.uniform(0.3, 3.0, size=int(out.sum())).astype(np.float32)
            c[out] = rng.uniform(1.0, 1.2, size=int(out.sum())).astype(np.float32)
            depth[j] = noisy.astype(np.float32)
            conf[j] = c
        return WindowPrediction(c2w, K, depth, conf, pred.pose_confidence, pred.metric, pred.extras)
