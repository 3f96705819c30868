"""Training loop of the embedded `da3-tiny` network (resumable, time-bounded).

    python -m da3_ros.train --out runs/tiny --minutes 9 --total-minutes 27 [--resume]
    python -m da3_ros.train --out runs/ft --init-from da3_ros/weights/da3-tiny --minutes 9

The shipped checkpoint's stages and arguments are in
`da3_ros/weights/da3-tiny/train_log.jsonl` ("stage" records).

Each call trains for `--minutes` (wall clock, data start-up included), writes the
training state (fp32 weights + AdamW moments, sharded safetensors of < 14 MB
each, step / seconds / next seed in the metadata), the fp16 export in the hub
layout (`<out>/da3-tiny/`), `train_log.jsonl` and, unless --no-eval, the
held-out streaming evaluation `eval.json`. `--resume` continues from the state in
`--resume-from` (default `--out`). The learning rate follows a cosine in the
fraction of `--total-minutes` of training time spent so far (over all calls).

Data: worker processes draw clip specs (scene + camera path, `data.clip_spec`,
fresh seeds, never the held-out ones); every step takes one window per clip
(random view count, stride and order), renders its views on the training device
(`synthetic.render.render_batch`) and augments them photometrically there. Every
window is a scene and path never seen before (about 200 windows a second on an
H100, where CPU rendering gave 2-3 clips a second). A share `--rig` of the batches
are rig windows (`data.rig_clip_spec`: several cameras fixed on one body, whole
rig frames per window, 2-12 views), drawn by workers of their own from seeds of
their own; validation then also reports the camera decoder's baseline between
cameras of one rig frame on the demo's rigs in held-out scenes (`val_rig_ratio`,
1 is right; `val_rig_right_way`), and the end-of-run evaluation adds the held-out
rigs through the streaming core (`evaluate.evaluate_rig`).

What it took to learn relative pose (measured on the validation windows, rotation
error against the 22.1 degrees of guessing no motion): depth losses plus pose
losses alone stayed at 19-21 degrees for four 9-minute runs (from scratch, fine-
tuned, short baselines, heavier pose weights); with the correspondence loss on
head 0 of the first cross-view block (`--w-match`, `losses.match_loss`) it fell
to 10.7 degrees in two runs; teaching the first two cross-view blocks
(`--match-blocks 2`, 8.0 against 9.5 degrees for one block in the same 9
minutes) and 55 more minutes brought it to 1.5 degrees.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..signals import install_signal_handlers
from ..model.camera import quat_to_rotmat
from ..model.config import PATCH_SIZE, get_config
from ..model.loading import save_hub_layout
from ..model.net import DA3Net, build_model
from ..model.rope import apply_rope
from ..model.preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..synthetic.render import render_batch, scene_tensors
from .data import (CLIP_FRAMES, NATIVE_H, NATIVE_W, TRAIN_SEED_BASE, ClipSpec, clip_spec, rig_clip_spec,
                   rig_window_views, spec_loop)
from .losses import abs_rel_median, losses, match_loss, patch_correspondence, resize_depth, targets

VARIANT = "da3-tiny"
#: network input for 320x240 frames at process_res 252 (processed_size rule)
NET_HW = (196, 252)
GRID_HW = (NET_HW[0] // PATCH_SIZE, NET_HW[1] // PATCH_SIZE)
SHARD_BYTES = 14_000_000
VIEW_CHOICES = (2, 3, 4, 5, 6, 8)
#: views of a rig window (the node's rig windows hold 4 rig frames: 8 views of a pair, 12 of three cameras)
RIG_VIEW_CHOICES = (2, 3, 4, 6, 8, 12)
#: rig clips draw their seeds this far above the single-camera clips' (disjoint scenes)
RIG_SEED_OFFSET = 500_000


# ------------------------------------------------------------------ model
def init_weights(net: DA3Net, seed: int = 0) -> DA3Net:
    """ViT-style init for training from scratch (the port keeps torch defaults)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, nn.Linear) and name.startswith("backbone"):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g).clamp(-2, 2) * 0.02)
                if m.bias is not None:
                    m.bias.zero_()
        vit = net.vit
        vit.pos_embed.copy_(torch.randn(vit.pos_embed.shape, generator=g).clamp(-2, 2) * 0.02)
        vit.cls_token.copy_(torch.randn(vit.cls_token.shape, generator=g) * 1e-6)
        vit.camera_token.copy_(torch.randn(vit.camera_token.shape, generator=g))
        # the fov output passes a ReLU: start it alive (about 70 degrees)
        net.cam_dec.fc_fov[0].bias.fill_(1.2)
    return net


def new_model(seed: int = 0) -> DA3Net:
    torch.manual_seed(seed)
    return init_weights(build_model(get_config(VARIANT)), seed)


#: the attention head taught correspondences (`losses.match_loss`): head 0 of the first
#: `--match-blocks` cross-view blocks
MATCH_HEAD = 0


def cross_view_blocks(net: DA3Net, n: int) -> List[int]:
    """Indices of the first `n` cross-view blocks (the odd blocks from alt_start on, as
    `vit.forward_late` runs them)."""
    blocks = [i for i in range(net.vit.alt_start, len(net.vit.blocks)) if i % 2 == 1]
    if n > len(blocks):
        raise ValueError(f"{n} match blocks asked for; the network has {len(blocks)} cross-view blocks")
    return blocks[:n]


def _capture_match_logits(store: list, S: int, P: int):
    """Forward pre-hook on a cross-view block's attention: append head MATCH_HEAD's logits
    of view v's patch queries over view 0's patch keys, (B, S, P, P), as SDPA sees them."""
    def hook(attn, args):
        x, rope = args[0], args[1] if len(args) > 1 else None
        Bn, N, C = x.shape
        q, k = attn.qkv(x).view(Bn, N, 3, attn.num_heads, attn.head_dim)[:, :, :2, MATCH_HEAD].unbind(2)
        q, k = attn.q_norm(q), attn.k_norm(k)
        if rope is not None:  # tables (N, head_dim) for the S*T tokens
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        T = N // S
        q = q.view(Bn, S, T, -1)[:, :, T - P:]
        k0 = k.view(Bn, S, T, -1)[:, 0, T - P:]
        store.append((q.float() @ k0.float().transpose(-1, -2)[:, None]) / attn.head_dim ** 0.5)
    return hook


def forward_train(net: DA3Net, images: torch.Tensor, amp: Optional[torch.dtype],
                  match: int = 0) -> Dict[str, torch.Tensor]:
    """The network's own forward pieces (reference = view 0, as at inference after the
    reference reorder); heads and camera decoder in fp32. images (B, S, 3, H, W).
    `match` > 0: also return "match_logits", a list of (B, S, P, P) logits of the taught
    head of the first `match` cross-view blocks (see losses.match_loss)."""
    S, H, W = images.shape[1], images.shape[3], images.shape[4]
    store: list = []
    handles = []
    if match and S > 1:
        P = (H // PATCH_SIZE) * (W // PATCH_SIZE)
        handles = [net.vit.blocks[b].attn.register_forward_pre_hook(_capture_match_logits(store, S, P))
                   for b in cross_view_blocks(net, int(match))]
    try:
        out = _forward_train(net, images, amp)
    finally:
        for h in handles:
            h.remove()
    if store:
        out["match_logits"] = store
    return out


def matching(logits: Sequence[torch.Tensor], target: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy over the taught blocks, and the first block's top-1 accuracy."""
    res = [match_loss(lg, target) for lg in logits]
    return torch.stack([ce for ce, _ in res]).mean(), res[0][1]


def _forward_train(net: DA3Net, images: torch.Tensor, amp: Optional[torch.dtype]) -> Dict[str, torch.Tensor]:
    B, S, _, H, W = images.shape
    vit = net.vit
    dev = images.device.type
    with torch.autocast(device_type=dev, dtype=amp or torch.bfloat16, enabled=amp is not None):
        x = vit.embed(images.flatten(0, 1))
        x, sel = vit.forward_early(x)
        feats, cam = net.forward_features(x.unflatten(0, (B, S)), sel.unflatten(0, (B, S)), (H, W),
                                          reference_strategy="first")
    with torch.autocast(device_type=dev, enabled=False):
        rn = net.head.stem([f.float().flatten(0, 1) for f in feats], H, W)
        depth, conf = net.head.forward_depth(rn, H, W)
        ray, ray_conf = net.head.forward_rays(rn, H, W)
        enc = net.cam_dec(cam.float())
    u = lambda t: t.unflatten(0, (B, S))  # noqa: E731
    return {"depth": u(depth), "depth_conf": u(conf), "ray": u(ray), "ray_conf": u(ray_conf), "pose_enc": enc}


# ------------------------------------------------------------------ state i/o
def save_state(out: Path, net: nn.Module, opt: torch.optim.Optimizer, meta: dict) -> List[Path]:
    """Sharded safetensors: model.* fp32, opt.<i>.<name>; meta (json) in every shard."""
    from safetensors.torch import save_file

    tensors: Dict[str, torch.Tensor] = {}
    for k, v in net.state_dict(keep_vars=False).items():
        tensors["model." + k] = v
    sd = opt.state_dict()
    for i, st in sd["state"].items():
        for name, v in st.items():
            tensors[f"opt.{i}.{name}"] = v if torch.is_tensor(v) else torch.tensor(v)
    meta = dict(meta, param_groups=sd["param_groups"])
    shards: List[Dict[str, torch.Tensor]] = [{}]
    size, seen = 0, set()
    for k, v in tensors.items():
        v = v.detach().to("cpu").clone().contiguous()
        n = v.numel() * v.element_size()
        if size + n > SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
        seen.add(k)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("state-*.safetensors"):
        old.unlink()
    paths = []
    for j, sh in enumerate(shards):
        p = out / f"state-{j:02d}-of-{len(shards):02d}.safetensors"
        save_file(sh, str(p), metadata={"meta": json.dumps(meta)})
        paths.append(p)
    return paths


def load_state(src: Path, net: nn.Module, opt: Optional[torch.optim.Optimizer]) -> dict:
    from safetensors import safe_open

    files = sorted(Path(src).glob("state-*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no state-*.safetensors in {src}")
    tensors, meta = {}, None
    for f in files:
        with safe_open(str(f), "pt") as h:
            meta = json.loads(h.metadata()["meta"])
            for k in h.keys():
                tensors[k] = h.get_tensor(k)
    msd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    net.load_state_dict(msd, strict=True)
    if opt is not None:
        state: Dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                state.setdefault(int(i), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return meta


def export(net: nn.Module, directory: Path) -> Path:
    """fp16 hub layout (config.json model_name + model.safetensors with `model.` keys)."""
    sd = {k: v.detach().to("cpu", torch.float16) for k, v in net.state_dict().items()}
    return save_hub_layout(sd, directory, VARIANT, one_alias=True)


# ------------------------------------------------------------------ data
class SpecFeeder:
    """Worker processes draw clip specs (scene + camera path, no pixels; fresh seeds,
    never the held-out ones) into one bounded queue; the trainer renders them on its
    device. Worker i draws seeds first + i, first + i + workers, ... and blocks while
    the queue is full, so neither memory nor the parent's interpreter is flooded."""

    def __init__(self, workers: int, first_seed: int, frames_per_clip: int = CLIP_FRAMES, depth: int = 1024,
                 rig: bool = False):
        self.frames_per_clip = frames_per_clip
        self.rig = rig
        self.drawn = 0
        self.max_seed = first_seed - 1
        self._next_inline = first_seed
        ctx = mp.get_context("spawn")  # no fork after CUDA / OpenMP start-up
        self._q = ctx.Queue(maxsize=depth)
        self._stop = ctx.Event()
        self._procs = [ctx.Process(target=spec_loop, args=(self._q, self._stop, first_seed + i, workers, frames_per_clip, rig),
                                   daemon=True) for i in range(workers)]
        for p in self._procs:
            p.start()

    @property
    def next_seed(self) -> int:
        """First seed not yet trained on (seeds drawn but not taken are skipped)."""
        return self.max_seed + 1

    def take(self, n: int) -> List[ClipSpec]:
        if self._procs:
            out = [self._q.get(timeout=120) for _ in range(n)]
        else:
            make = rig_clip_spec if self.rig else clip_spec
            out = [make(self._next_inline + i, self.frames_per_clip) for i in range(n)]
            self._next_inline += n
        self.drawn += n
        self.max_seed = max([self.max_seed] + [sp.seed for sp in out])
        return out

    def close(self):
        self._stop.set()
        for p in self._procs:
            p.terminate()
        for p in self._procs:
            p.join(timeout=5)


def _norm(images_u8: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 / float 0..255 -> normalised (N, 3, H, W)."""
    x = images_u8.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def to_network(images: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, hw=NET_HW, augment: bool = False,
               gen: Optional[torch.Generator] = None):
    """Native frames (B, S, h, w, 3) uint8, depth (B, S, h, w), K (B, S, 3, 3) renderer pixels ->
    network input (B, S, 3, H, W) (area resize, as `preprocess` does), depth (nearest), K (continuous)."""
    B, S, h, w, _ = images.shape
    H, W = hw
    x = images.flatten(0, 1).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(H, W), mode="area")
    if augment:
        dev = x.device
        r = lambda *shape: torch.rand(*shape, device=dev, generator=gen)  # noqa: E731
        xs = x.unflatten(0, (B, S)) / 255.0
        gain = (0.75 + 0.5 * r(B, 1, 3, 1, 1)) * (0.95 + 0.1 * r(B, S, 1, 1, 1))
        gamma = 0.7 + 0.7 * r(B, 1, 1, 1, 1)
        xs = (xs * gain).clamp(0, 1) ** gamma
        mu = xs.mean(dim=(2, 3, 4), keepdim=True)
        xs = mu + (xs - mu) * (0.7 + 0.6 * r(B, 1, 1, 1, 1))
        xs = xs + torch.randn(xs.shape, device=dev, generator=gen) * (0.02 * r(B, 1, 1, 1, 1))
        x = (xs.clamp(0, 1) * 255.0).flatten(0, 1)
    x = _norm(x.permute(0, 2, 3, 1)).unflatten(0, (B, S))
    d = resize_depth(depth.flatten(0, 1).float(), (H, W)).unflatten(0, (B, S))
    Kc = K.clone()
    Kc[..., 0, 2] += 0.5
    Kc[..., 1, 2] += 0.5
    Sx = torch.tensor([[W / w, 0, 0], [0, H / h, 0], [0, 0, 1]], device=K.device, dtype=K.dtype)
    return x, d, Sx @ Kc


def window_kind(rng: random.Random, short: float = 0.0, rig: bool = False) -> Tuple[int, bool]:
    """(view count, short-baseline?) of the next batch; `short` is the probability of
    a short-baseline batch (2-4 views at stride 1-2)."""
    easy = rng.random() < short
    return rng.choice((2, 3, 4) if easy else RIG_VIEW_CHOICES if rig else VIEW_CHOICES), easy


def window_indices(n: int, S: int, rng: random.Random, easy: bool = False) -> List[int]:
    """S view indices into a clip of `n` frames: random stride, start and order."""
    max_stride = max(1, min(2 if easy else 4, (n - 1) // max(S - 1, 1)))
    r = rng.randint(1, max_stride)
    start = rng.randint(0, n - 1 - (S - 1) * r)
    idx = [start + j * r for j in range(S)]
    if not easy and rng.random() < 0.2:
        idx = sorted(rng.sample(range(n), S))
    if rng.random() < 0.5:
        rng.shuffle(idx)
    return idx


def sample_batch(specs: Sequence[ClipSpec], S: int, rng: random.Random, easy: bool = False, device="cpu",
                 chunk: int = 64):
    """One window of S views per clip spec, rendered on `device`. Returns images
    (B, S, h, w, 3) uint8, depth (B, S, h, w) metres, c2w (B, S, 4, 4), K (B, S, 3, 3)
    renderer pixels."""
    c2w, Ks = [], []
    for spec in specs:
        idx = rig_window_views(spec, S, rng, easy) if spec.cameras > 1 else window_indices(spec.c2w.shape[0], S, rng, easy)
        c2w.append(torch.from_numpy(spec.c2w[idx]))
        Ks.append(torch.from_numpy(spec.K).expand(S, 3, 3))
    c2w_t, K_t = torch.cat(c2w).to(device), torch.cat(Ks).to(device)
    # one scene per window, repeated for its S views on the device
    scenes = {k: v.repeat_interleave(S, dim=0) for k, v in scene_tensors([sp.scene for sp in specs], device=device).items()}
    ims, ds = [], []
    for i in range(0, len(c2w_t), chunk):
        im, d = render_batch({k: v[i:i + chunk] for k, v in scenes.items()}, c2w_t[i:i + chunk],
                             K_t[i:i + chunk], NATIVE_W, NATIVE_H)
        ims.append(im)
        ds.append(d)
    u = lambda t: t.unflatten(0, (len(specs), S))  # noqa: E731
    return u(torch.cat(ims)), u(torch.cat(ds)), u(c2w_t.float()), u(K_t.float())


#: held-out validation windows: (frames of the sequence, first view, stride), 8 views each;
#: 60 frames is the spacing of the held-out streaming evaluation and the demo
VAL_WINDOWS = ((60, 0, 1), (60, 26, 1), (60, 52, 1), (60, 10, 2), (40, 16, 3))


def validation_windows(device):
    """Fixed held-out windows (`VAL_WINDOWS`) of every held-out sequence."""
    from .data import held_out_sequences

    out = []
    for n_frames in sorted({w[0] for w in VAL_WINDOWS}):
        for seq in held_out_sequences(n_frames, device=str(device)):
            for _, start, stride in (w for w in VAL_WINDOWS if w[0] == n_frames):
                idx = list(range(start, n_frames, stride))[:8]
                ims = torch.from_numpy(seq.images[idx])[None].to(device)
                d = torch.from_numpy(seq.depth[idx])[None].to(device)
                c = torch.from_numpy(seq.c2w[idx]).float()[None].to(device)
                K = torch.from_numpy(seq.intrinsics).float().to(device).expand(1, len(idx), 3, 3)
                out.append((seq.name, ims, d, c, K))
    return out


#: held-out rig validation windows: (rig frames of the sequence, first rig frame, rig-frame stride), 4 rig frames
#: each with every camera (the node's rig windows)
RIG_VAL_WINDOWS = ((24, 0, 3), (24, 10, 4))


def rig_validation_windows(device):
    """Fixed held-out rig windows (`RIG_VAL_WINDOWS`, the demo's rigs on held-out
    scenes): (name, images, depth, c2w, K, rig frame of each view)."""
    from .data import held_out_rigs

    out = []
    n_frames = max(w[0] for w in RIG_VAL_WINDOWS)
    for rig in held_out_rigs(n_frames, device=str(device)):
        for _, start, stride in RIG_VAL_WINDOWS:
            frames = [start + j * stride for j in range(4)]
            idx = [int(v) for k in frames for v in np.flatnonzero(rig.view_frame == k)]
            t = lambda a: torch.from_numpy(a)[None].to(device)  # noqa: E731
            K = torch.from_numpy(rig.view_intrinsics(idx)).float()[None].to(device)
            out.append((rig.name, t(rig.images[idx]), t(rig.depth[idx]), t(rig.c2w[idx]).float(), K,
                        rig.view_frame[idx].copy()))
    return out


def rig_baseline_ratios(pose_enc: torch.Tensor, t_gt: torch.Tensor, R_gt: torch.Tensor, rig_frame) -> List[float]:
    """Per pair of views of one rig frame: the camera decoder's translation between
    them projected on the true one, over the true length squared (1: right; < 0: the
    wrong way). pose_enc (S, 9), t_gt (S, 3), R_gt (S, 3, 3) in the reference's frame."""
    R = quat_to_rotmat(pose_enc[:, 3:7].float())
    t = pose_enc[:, :3].float()
    out = []
    for a in range(len(rig_frame)):
        for b in range(a + 1, len(rig_frame)):
            if rig_frame[a] != rig_frame[b]:
                continue
            tp = R[a].T @ (t[b] - t[a])  # b's centre in a's camera frame
            tg = R_gt[a].T @ (t_gt[b] - t_gt[a])
            out.append(float(tp @ tg / (tg @ tg).clamp_min(1e-12)))
    return out


def rotation_deg(R: torch.Tensor) -> torch.Tensor:
    """Angle of rotation matrices (..., 3, 3), degrees."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos))


@torch.no_grad()
def validate(net: DA3Net, windows, amp, rig_windows=()) -> Dict[str, float]:
    """Held-out losses plus the pose error that matters: `val_rot_deg` (camera decoder's
    rotation of views 1.. against the ground truth) next to `val_rot_motion_deg` (the
    error of guessing no motion), and the same for the scale-normalised centres.
    On the held-out rig windows: `val_rig_ratio` (median of `rig_baseline_ratios`),
    `val_rig_right_way` (the share with the right sign), `val_rig_abs_rel`, `val_rig_rot_deg`."""
    net.eval()
    acc: Dict[str, List[float]] = {}
    ratios: List[float] = []
    for name, ims, d, c, K, rig_frame in rig_windows:
        x, dd, Kn = to_network(ims, d, K)
        pred = forward_train(net, x, amp)
        tgt = targets(dd, c, Kn, NET_HW, pred["ray"].shape[2:4])
        ratios += rig_baseline_ratios(pred["pose_enc"][0], tgt["t"][0], tgt["R"][0], rig_frame)
        R = quat_to_rotmat(pred["pose_enc"][..., 3:7])
        acc.setdefault("val_rig_abs_rel", []).append(float(abs_rel_median(pred["depth"], tgt["depth"], tgt["valid"])))
        acc.setdefault("val_rig_rot_deg", []).append(float(rotation_deg(R.transpose(-1, -2) @ tgt["R"])[:, 1:].mean()))
    for name, ims, d, c, K in windows:
        x, dd, Kn = to_network(ims, d, K)
        pred = forward_train(net, x, amp, match=1)
        tgt = targets(dd, c, Kn, NET_HW, pred["ray"].shape[2:4])
        ls = losses(pred, tgt)
        _, ls["match_acc"] = matching(pred["match_logits"], patch_correspondence(dd, c, Kn, GRID_HW))
        R = quat_to_rotmat(pred["pose_enc"][..., 3:7])
        vals = {"val_total": ls["total"], "val_cam_t": ls["cam_t"], "val_ray_l1": ls["ray_l1"],
                "val_abs_rel": abs_rel_median(pred["depth"], tgt["depth"], tgt["valid"]),
                "val_match_acc": ls["match_acc"],
                "val_rot_deg": rotation_deg(R.transpose(-1, -2) @ tgt["R"])[:, 1:].mean(),
                "val_rot_motion_deg": rotation_deg(tgt["R"])[:, 1:].mean(),
                "val_centre_err": (pred["pose_enc"][..., :3] - tgt["t"]).norm(dim=-1)[:, 1:].mean(),
                "val_centre_motion": tgt["t"].norm(dim=-1)[:, 1:].mean()}
        for k, v in vals.items():
            acc.setdefault(k, []).append(float(v))
    net.train()
    out = {k: float(np.mean(v)) for k, v in acc.items()}
    if ratios:
        out.update(val_rig_ratio=float(np.median(ratios)), val_rig_right_way=float(np.mean(np.array(ratios) > 0)))
    return out


# ------------------------------------------------------------------ loop
def lr_at(progress: float, step: int, base: float, warmup: int) -> float:
    w = min(1.0, (step + 1) / warmup)
    p = min(max(progress, 0.0), 1.0)
    return base * w * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def training_device(name: str) -> torch.device:
    dev = torch.device(name if name != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        # the host only feeds the GPU; all cores' worth of intra-op threads per trainer
        # spin against each other and the spec workers on small CPU ops
        torch.set_num_threads(min(4, torch.get_num_threads()))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return dev


def optimizer(net: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, tokens and position embeddings."""
    decay, no_decay = [], []
    for n, p in net.named_parameters():
        (decay if p.ndim >= 2 and "token" not in n and "pos_embed" not in n else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


def train(a) -> dict:
    t_start = time.time()
    install_signal_handlers()  # a stuck run says where
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = training_device(a.device)
    amp = torch.bfloat16 if (dev.type == "cuda" and not a.fp32) else None
    net = new_model(a.seed).to(dev).train()
    opt = optimizer(net, a.lr, a.weight_decay)
    meta = {"step": 0, "train_seconds": 0.0, "next_seed": TRAIN_SEED_BASE + 1_000_000 * a.seed, "runs": 0, "clips": 0,
            "next_rig_seed": TRAIN_SEED_BASE + 1_000_000 * a.seed + RIG_SEED_OFFSET}
    if a.init_from and not a.resume:
        from ..model.loading import load_model

        net.load_state_dict(load_model(a.init_from, device="cpu", dtype=torch.float32).state_dict())
        print(f"initialised from {a.init_from}", flush=True)
    if a.resume:
        meta = load_state(Path(a.resume_from or a.out), net, opt)
        print(f"resumed: step {meta['step']}, {meta['train_seconds']:.0f} s trained, next seed {meta['next_seed']}", flush=True)
    log_f = open(out / "train_log.jsonl", "a")

    def log(rec):
        rec = dict(rec, wall=round(time.time() - t_start, 1))
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        print(json.dumps(rec), flush=True)

    nparams = sum(p.numel() for p in net.parameters())
    log({"event": "start", "device": str(dev), "params": nparams, "amp": str(amp), "workers": a.workers,
         "frames_per_step": a.frames, "lr": a.lr, "resume": bool(a.resume), "step": meta["step"], "rig_share": a.rig})
    val = validation_windows(dev)
    rig_val = rig_validation_windows(dev) if a.rig > 0 else []
    rig_workers = max(1, a.workers // 2) if a.rig > 0 and a.workers else 0
    feeder = SpecFeeder(a.workers - rig_workers, meta["next_seed"])
    rig_feeder = (SpecFeeder(rig_workers, meta.get("next_rig_seed", meta["next_seed"] + RIG_SEED_OFFSET), rig=True)
                  if a.rig > 0 else None)
    log({"event": "data_ready", "seconds": round(time.time() - t_start, 1)})
    rng = random.Random(meta["step"] * 7919 + a.seed)
    gen = torch.Generator(device=dev).manual_seed(meta["step"] + 17)
    total_s = a.total_minutes * 60.0
    deadline = t_start + a.minutes * 60.0 - a.reserve
    step, trained0, t_loop = meta["step"], meta["train_seconds"], time.time()
    last_ckpt, acc, n_acc, wait_s = time.time(), {}, 0, 0.0
    while time.time() < deadline and (a.max_steps <= 0 or step < meta["step"] + a.max_steps):
        trained = trained0 + (time.time() - t_loop)
        lr = lr_at(trained / total_s, step, a.lr, a.warmup)
        for gi, g in enumerate(opt.param_groups):
            g["lr"] = lr
        rig_batch = rig_feeder is not None and rng.random() < a.rig
        S, easy = window_kind(rng, a.short, rig=rig_batch)
        t_take = time.time()
        specs = (rig_feeder if rig_batch else feeder).take(max(1, a.frames // S))
        wait_s += time.time() - t_take
        ims, ds, cs, Ks = sample_batch(specs, S, rng, easy, device=dev)
        x, d, Kn = to_network(ims, ds, Ks, augment=True, gen=gen)
        pred = forward_train(net, x, amp, match=a.match_blocks if a.w_match > 0 else 0)
        tgt = targets(d, cs, Kn, NET_HW, pred["ray"].shape[2:4])
        ls = losses(pred, tgt, a.w_t, a.w_q)
        if "match_logits" in pred:
            ls["match"], ls["match_acc"] = matching(pred["match_logits"], patch_correspondence(d, cs, Kn, GRID_HW))
            ls["total"] = ls["total"] + a.w_match * ls["match"]
        opt.zero_grad(set_to_none=True)
        ls["total"].backward()
        gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        for k, v in ls.items():
            acc[k] = acc.get(k, 0.0) + v.detach()
        n_acc += 1
        if step % a.log_every == 0:
            # data_wait_s: time blocked on the spec workers since the last log (data-bound if large)
            rec = {"step": step, "lr": lr, "gnorm": float(gn), "trained_s": round(trained, 1), "clips": feeder.drawn,
                   "rig_clips": rig_feeder.drawn if rig_feeder else 0, "data_wait_s": round(wait_s, 2)}
            wait_s = 0.0
            rec.update({k: round(float(v) / n_acc, 5) for k, v in acc.items()})
            acc, n_acc = {}, 0
            if step % (a.log_every * a.val_every) == 0:
                rec.update({k: round(v, 5) for k, v in validate(net, val, amp, rig_val).items()})
            log(rec)
        if time.time() - last_ckpt > a.ckpt_every:
            meta.update(step=step, train_seconds=trained0 + time.time() - t_loop, next_seed=feeder.next_seed,
                        next_rig_seed=rig_feeder.next_seed if rig_feeder else meta["next_rig_seed"])
            save_state(out, net, opt, meta)
            last_ckpt = time.time()
    trained = trained0 + time.time() - t_loop
    feeder.close()
    if rig_feeder:
        rig_feeder.close()
    meta.update(step=step, train_seconds=trained, next_seed=feeder.next_seed, runs=meta.get("runs", 0) + 1,
                clips=meta.get("clips", 0) + feeder.drawn,
                next_rig_seed=rig_feeder.next_seed if rig_feeder else meta.get("next_rig_seed"),
                rig_clips=meta.get("rig_clips", 0) + (rig_feeder.drawn if rig_feeder else 0))
    save_state(out, net, opt, meta)
    exp_dir = export(net, out / VARIANT)
    rec = {"event": "end", "step": step, "train_seconds": round(trained, 1), "clips_this_run": feeder.drawn,
           "rig_clips_this_run": rig_feeder.drawn if rig_feeder else 0}
    rec.update({k: round(v, 5) for k, v in validate(net, val, amp, rig_val).items()})
    log(rec)
    if not a.no_eval:
        held_out_eval(exp_dir, a, dev, out, log)
    log_f.close()
    return meta


def held_out_eval(exp_dir: Path, a, dev: torch.device, out: Path, log) -> None:
    """The exported checkpoint streamed over the held-out sequences (and rigs), camera
    then ray poses; eval.json is written after each, the means logged."""
    from ..runtime.da3_model import DA3WindowModel
    from ..weights import EMBEDDED_PROCESS_RES
    from .data import held_out_sequences
    from .data import held_out_rigs
    from .evaluate import evaluate, evaluate_rig

    results = {}
    seqs = held_out_sequences(a.eval_frames, device=str(dev))
    rigs = held_out_rigs(a.eval_frames, device=str(dev)) if a.rig > 0 else []
    for pose_source in ("camera", "ray"):  # the demo's first: eval.json is written after each
        print(f"held-out streaming eval, pose_source={pose_source}", flush=True)
        m = DA3WindowModel(str(exp_dir), device=str(dev), precision="fp32", process_res=EMBEDDED_PROCESS_RES,
                           pose_source=pose_source)
        results[pose_source] = evaluate(m, seqs)
        if rigs:
            results[f"rig_{pose_source}"] = evaluate_rig(m, rigs)
        (out / "eval.json").write_text(json.dumps(results, indent=1))
    log({"event": "eval", **{f"{pf}_{k}": round(v, 5) for pf, r in results.items() if "mean" in r
                             for k, v in r["mean"].items()},
         **{f"{pf}_{name}_{k}": round(float(v), 4) for pf, r in results.items() if pf.startswith("rig_")
            for name, m in r.items() for k, v in (("ratio", m["baselines"]["ratio_median"]),
                                                   ("right_way", m["baselines"]["right_way"]),
                                                   ("ate_se3_m", m["ate_se3_m"]),
                                                   ("metres_per_unit", m["metres_per_unit"] or 0.0))}})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m da3_ros.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for state shards, export, logs")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--resume-from", default=None, help="state directory (default: --out)")
    p.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of this call")
    p.add_argument("--total-minutes", type=float, default=24.0, help="training time of the whole schedule (all calls)")
    p.add_argument("--reserve", type=float, default=75.0, help="seconds kept for saving, export and evaluation")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--init-from", default=None, help="hub-layout weights to start from (a fresh optimiser)")
    p.add_argument("--frames", type=int, default=128, help="views per step (batch x views)")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--w-t", type=float, default=10.0, help="weight of the camera-centre loss")
    p.add_argument("--w-q", type=float, default=20.0, help="weight of the quaternion loss")
    p.add_argument("--w-match", type=float, default=0.5, help="weight of the correspondence loss (0: off)")
    p.add_argument("--match-blocks", type=int, default=2,
                   help="teach head 0 of this many cross-view blocks, first ones first")
    p.add_argument("--short", type=float, default=0.5, help="share of short-baseline batches (2-4 views, stride 1-2)")
    p.add_argument("--rig", type=float, default=0.5,
                   help="share of rig batches (several cameras of one instant, data.rig_clip_spec); 0: single cameras only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in this call (0: time only)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--val-every", type=int, default=4, help="validation every N logs")
    p.add_argument("--ckpt-every", type=float, default=150.0, help="seconds between state saves")
    p.add_argument("--no-eval", action="store_true")
    p.add_argument("--eval-frames", type=int, default=60)
    return p


def main(argv=None) -> int:
    train(parser().parse_args(argv))
    return 0
