"""Optimised incremental path of `DA3WindowModel` (same answers as the plain path).

The plain path (`DA3Net.encode` + `DA3Net.forward_window`) is kept as the
reference; this module runs the same arithmetic in fixed-shape stages:

* `encode`: uint8 frame -> ONE reused pinned host buffer -> non-blocking upload ->
  resize + ImageNet normalisation on the device -> patch embedding -> per-view
  blocks. Tokens are copied into the frame's handle (the cache).
* `cross_view`: cached tokens of the window -> reference-view order -> cross-view
  blocks -> features of the decoded views only (+ camera tokens of all views).
* `depth`: Dual-DPT depth branch on the decoded views, resized to native size.
* `pose`: camera decoder (or ray head + solver) for every view.

Each stage reads and writes static buffers, so on CUDA it is captured once per
shape as a CUDA graph (warm-up at start-up) and replayed: no per-frame launches
from Python, no host synchronisation except the one fetch of the published
results (one pinned buffer per output, one stream sync).

Blocks run through `block_forward`, a functional copy of `vit.Block` that takes
its parameters as arguments, so one `torch.compile` graph (inductor, dynamic
shapes) serves every block of a variant and fuses LayerNorm, QK-norm, RoPE,
LayerScale and residual adds. Under bf16/fp16 autocast the ViT blocks' Linear
weights are stored in that dtype (autocast would cast them on every call; the
result is bit-identical), LayerNorm and LayerScale parameters stay fp32, and the
dtype flow of autocast is reproduced explicitly (LayerNorm in fp32, matmuls and
SDPA in the autocast dtype, residual stream fp32). Heads, camera decoder and ray
solver run in fp32 exactly as in the plain path.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .camera import decode_pose, invert_rigid
from .config import PATCH_SIZE
from .net import MIN_VIEWS_FOR_REFERENCE, DA3Net
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, processed_size
from .ray_pose import denormalize_intrinsics, solve_rays
from .reference import reference_order
from .rope import apply_rope
from .vit import Block, SwiGLU

COMPILE_MODES = ("off", "staged", "graphs", "inductor", "auto")

BlockParams = Tuple[Optional[torch.Tensor], ...]


def resolve_compile(compile, device: torch.device) -> str:
    """compile argument -> one of off | staged | graphs | inductor.

    False / "off": plain eager path. "staged": the fast path without CUDA graphs or
    inductor (CPU-testable). "graphs": + CUDA graphs. True / "inductor": + fused
    blocks via torch.compile (CUDA). "auto": inductor on CUDA when triton is
    importable (else graphs), off on the CPU.
    """
    if compile is False or compile is None:
        return "off"
    if compile is True:
        compile = "inductor"
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile must be True, False or one of {COMPILE_MODES}, got {compile!r}")
    cuda = device.type == "cuda"
    if compile == "auto":
        if not cuda:
            return "off"
        return "inductor" if _triton_available() else "graphs"
    if not cuda and compile in ("graphs", "inductor"):
        return "staged"  # CUDA graphs / inductor kernels are GPU-only here
    return compile


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401

        return True
    except Exception:
        return False


# ---------------------------------------------------------------------- block
def block_params(blk: Block) -> BlockParams:
    """The parameters of a `vit.Block` in `block_forward`'s order (detached views)."""
    a, m = blk.attn, blk.mlp
    qk = isinstance(a.q_norm, nn.LayerNorm)
    if isinstance(m, SwiGLU):
        f1, f2 = m.w12, m.w3
    else:
        f1, f2 = m.fc1, m.fc2
    ps = (blk.norm1.weight, blk.norm1.bias, a.qkv.weight, a.qkv.bias,
          a.q_norm.weight if qk else None, a.q_norm.bias if qk else None,
          a.k_norm.weight if qk else None, a.k_norm.bias if qk else None,
          a.proj.weight, a.proj.bias, blk.ls1.gamma, blk.norm2.weight, blk.norm2.bias,
          f1.weight, f1.bias, f2.weight, f2.bias, blk.ls2.gamma)
    return tuple(None if p is None else p.detach() for p in ps)


def _low(t: torch.Tensor, amp: Optional[torch.dtype]) -> torch.Tensor:
    """Operand of a matmul / SDPA under autocast."""
    return t if amp is None else t.to(amp)


def _ln(t: torch.Tensor, w, b, eps: float, amp: Optional[torch.dtype]) -> torch.Tensor:
    """LayerNorm as autocast runs it (in fp32)."""
    return F.layer_norm(t if amp is None else t.float(), (t.shape[-1],), w, b, eps)


def block_pre(x: torch.Tensor, n1w, n1b, qkv_w, qkv_b, qnw, qnb, knw, knb, cos: Optional[torch.Tensor],
              sin: Optional[torch.Tensor], heads: int, amp: Optional[torch.dtype], eps: float = 1e-6):
    """Attention inputs of a block: norm1, qkv, QK-norm, RoPE -> contiguous q, k, v (B, heads, N, hd)."""
    B, N, C = x.shape
    h = _ln(x, n1w, n1b, eps, amp)
    qkv = F.linear(_low(h, amp), _low(qkv_w, amp), _low(qkv_b, amp))
    q, k, v = qkv.view(B, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4).unbind(0)
    if qnw is not None:
        q, k = _ln(q, qnw, qnb, 1e-5, amp), _ln(k, knw, knb, 1e-5, amp)
    if cos is not None:
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    return _low(q, amp).contiguous(), _low(k, amp).contiguous(), _low(v, amp).contiguous()


def block_post(x: torch.Tensor, o: torch.Tensor, pw, pb, g1, n2w, n2b, f1w, f1b, f2w, f2b, g2,
               amp: Optional[torch.dtype], swiglu: bool, eps: float = 1e-6) -> torch.Tensor:
    """Rest of a block after attention: proj, LayerScale, residual, norm2, FFN, LayerScale, residual."""
    B, N, C = x.shape
    o = F.linear(_low(o.transpose(1, 2).reshape(B, N, C), amp), _low(pw, amp), _low(pb, amp))
    x = x + o * g1
    h = F.linear(_low(_ln(x, n2w, n2b, eps, amp), amp), _low(f1w, amp), _low(f1b, amp))
    if swiglu:
        a, b = h.chunk(2, dim=-1)
        h = F.silu(a) * b
    else:
        h = F.gelu(h)
    h = F.linear(_low(h, amp), _low(f2w, amp), _low(f2b, amp))
    return x + h * g2


def block_forward(x: torch.Tensor, p: BlockParams, cos: Optional[torch.Tensor], sin: Optional[torch.Tensor],
                  heads: int, amp: Optional[torch.dtype], swiglu: bool, sdpa: Callable = None) -> torch.Tensor:
    """`vit.Block.forward` (with `rope=(cos, sin)` or none) as one function of its parameters.

    amp: the autocast dtype the plain path runs the block under (None = fp32); its
    dtype flow is reproduced explicitly, so call this with autocast disabled.
    """
    n1w, n1b, qkv_w, qkv_b, qnw, qnb, knw, knb, pw, pb, g1, n2w, n2b, f1w, f1b, f2w, f2b, g2 = p
    q, k, v = block_pre(x, n1w, n1b, qkv_w, qkv_b, qnw, qnb, knw, knb, cos, sin, heads, amp)
    o = (sdpa or F.scaled_dot_product_attention)(q, k, v)
    return block_post(x, o, pw, pb, g1, n2w, n2b, f1w, f1b, f2w, f2b, g2, amp, swiglu)


class SdpaChooser:
    """`F.scaled_dot_product_attention` with the fastest exact backend per shape (CUDA).

    At the first call of a shape (warm-up, outside graph capture) it times the
    flash, cuDNN and memory-efficient kernels and keeps the fastest whose output
    matches the default's (bf16 noise). `DA3_SDPA=flash|cudnn|efficient|default`
    forces one."""

    def __init__(self, enabled: bool, log: Optional[Callable[[str], None]] = None):
        self.enabled = enabled
        self.choice: Dict[tuple, object] = {}
        self.log = log or (lambda m: None)
        self.force = os.environ.get("DA3_SDPA", "").strip().lower()

    def _backends(self):
        from torch.nn.attention import SDPBackend

        names = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
        if self.force in names:
            return [getattr(SDPBackend, names[self.force])]
        if self.force == "default":
            return []
        return [getattr(SDPBackend, names[n]) for n in ("cudnn", "flash", "efficient") if hasattr(SDPBackend, names[n])]

    def _tune(self, q, k, v):
        from torch.nn.attention import sdpa_kernel

        ref = F.scaled_dot_product_attention(q, k, v)
        scale = float(ref.abs().max()) + 1e-6
        best, best_ms, report = None, float("inf"), []
        for b in self._backends():
            try:
                with sdpa_kernel([b]):
                    out = F.scaled_dot_product_attention(q, k, v)
                    if float((out.float() - ref.float()).abs().max()) > 2e-2 * scale:
                        report.append(f"{b.name}: mismatch")
                        continue
                    torch.cuda.synchronize()
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                    for _ in range(5):
                        F.scaled_dot_product_attention(q, k, v)
                    e1.record()
                    torch.cuda.synchronize()
                    ms = e0.elapsed_time(e1) / 5
            except Exception as exc:  # backend unsupported for this shape / build
                report.append(f"{b.name}: n/a ({type(exc).__name__})")
                continue
            report.append(f"{b.name}: {ms:.3f} ms")
            if ms < best_ms:
                best, best_ms = b, ms
        self.log(f"sdpa {tuple(q.shape)} {q.dtype}: " + ", ".join(report) + f" -> {getattr(best, 'name', 'default')}")
        return best

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return F.scaled_dot_product_attention(q, k, v)
        key = (tuple(q.shape), tuple(k.shape), q.dtype)
        if key not in self.choice:
            if torch.cuda.is_current_stream_capturing():
                return F.scaled_dot_product_attention(q, k, v)
            self.choice[key] = self._tune(q, k, v)
        b = self.choice[key]
        if b is None:
            return F.scaled_dot_product_attention(q, k, v)
        from torch.nn.attention import sdpa_kernel

        with sdpa_kernel([b]):
            return F.scaled_dot_product_attention(q, k, v)


def store_linear_weights_in(vit: nn.Module, dtype: Optional[torch.dtype]) -> None:
    """Keep the ViT blocks' Linear weights and biases in the autocast dtype (what autocast
    casts them to on every call anyway: results are bit-identical under autocast).
    After this the backbone must run under autocast of that dtype (the plain path does)."""
    if dtype is None:
        return
    for blk in vit.blocks:
        for mod in blk.modules():
            if isinstance(mod, nn.Linear):
                mod.weight.data = mod.weight.data.to(dtype)
                if mod.bias is not None:
                    mod.bias.data = mod.bias.data.to(dtype)


# ---------------------------------------------------------------------- stages
class Stage:
    """A function of static input buffers, replayed as a CUDA graph when enabled.

    `fn()` reads its inputs from tensors it closes over and returns a tuple of
    tensors; with a graph the returned tensors are the graph's static outputs
    (overwritten by the next replay)."""

    def __init__(self, name: str, fn: Callable[[], Tuple[torch.Tensor, ...]], graph: bool, pool=None):
        self.name, self.fn, self.use_graph, self.pool = name, fn, graph, pool
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.out: Optional[Tuple[torch.Tensor, ...]] = None

    def prepare(self) -> None:
        if not self.use_graph or self.graph is not None:
            return
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):  # compile / autotune / allocate before capture
                self.fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(g, pool=self.pool):
                self.out = self.fn()
        except Exception as exc:  # not capturable here: run this stage eagerly
            warnings.warn(f"CUDA graph capture of stage {self.name!r} failed ({type(exc).__name__}: {exc}); "
                          "running it eagerly")
            torch.cuda.synchronize()
            self.use_graph, self.out = False, None
            return
        self.graph = g

    def __call__(self) -> Tuple[torch.Tensor, ...]:
        if not self.use_graph:
            return self.fn()
        if self.graph is None:
            self.prepare()
            if not self.use_graph:
                return self.fn()
        self.graph.replay()
        return self.out


class FastPath:
    """Fixed-shape staged execution of an any-view `DA3Net` for `DA3WindowModel`."""

    def __init__(self, net: DA3Net, device: torch.device, mode: str, pose_from: str, ref_view_strategy: str,
                 log: Optional[Callable[[str], None]] = None):
        if not (isinstance(net, DA3Net) and net.cfg.any_view):
            raise TypeError("the fast path serves any-view DA3Net models")
        self.net, self.vit, self.device, self.mode = net, net.vit, device, mode
        self.pose_from, self.ref_view_strategy = pose_from, ref_view_strategy
        self.amp = net.amp_dtype
        self.use_graphs = mode in ("graphs", "inductor") and device.type == "cuda"
        self.pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self.log = log or (lambda m: None)
        vit = self.vit
        store_linear_weights_in(vit, self.amp)
        self.params = [block_params(b) for b in vit.blocks]
        self.heads = vit.cfg.num_heads
        self.swiglu = vit.cfg.ffn == "swiglu"
        self.sdpa = SdpaChooser(device.type == "cuda" and mode in ("graphs", "inductor"), self.log)
        self._pre, self._post = block_pre, block_post
        if mode == "inductor" and device.type == "cuda":
            from torch import _dynamo

            _dynamo.config.cache_size_limit = max(_dynamo.config.cache_size_limit, 64)
            # dynamic shapes: one graph per block kind serves every window size and resolution
            # (DA3_COMPILE_DYNAMIC=auto: torch's automatic dynamic shapes, static dims stay static)
            dyn = None if os.environ.get("DA3_COMPILE_DYNAMIC", "1") == "auto" else True
            self._pre = torch.compile(block_pre, dynamic=dyn, fullgraph=True)
            self._post = torch.compile(block_post, dynamic=dyn, fullgraph=True)
        self.mean = (torch.tensor(IMAGENET_MEAN, device=device) * 255.0).view(1, 3, 1, 1)
        self.std = (torch.tensor(IMAGENET_STD, device=device) * 255.0).view(1, 3, 1, 1)
        self._enc: Dict[Tuple[int, int], dict] = {}
        self._win: Dict[tuple, dict] = {}

    def reset(self) -> None:
        """Drop every captured graph and static buffer (their memory goes back to the allocator)."""
        self._enc.clear()
        self._win.clear()
        if self.use_graphs:
            torch.cuda.synchronize(self.device)
            self.pool = torch.cuda.graph_pool_handle()

    # ------------------------------------------------------------------ helpers
    def _autocast_off(self):
        return torch.autocast(device_type=self.device.type, enabled=False)

    def _run_block(self, i: int, x: torch.Tensor, rope=None, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Block i on x (B, N, D); with `rows` (indices into N, batch 1) only those output rows."""
        cos, sin = rope if rope is not None else (None, None)
        n1w, n1b, qkv_w, qkv_b, qnw, qnb, knw, knb, pw, pb, g1, n2w, n2b, f1w, f1b, f2w, f2b, g2 = self.params[i]
        try:
            q, k, v = self._pre(x, n1w, n1b, qkv_w, qkv_b, qnw, qnb, knw, knb, cos, sin, self.heads, self.amp)
            if rows is not None:
                q, x = q.index_select(2, rows), x.index_select(1, rows)
            o = self.sdpa(q, k, v)
            return self._post(x, o, pw, pb, g1, n2w, n2b, f1w, f1b, f2w, f2b, g2, self.amp, self.swiglu)
        except Exception as exc:  # inductor unavailable / failing: the same functions, eager
            if self._pre is block_pre:
                raise
            warnings.warn(f"torch.compile of the ViT block failed ({type(exc).__name__}: {exc}); running eager")
            self._pre, self._post = block_pre, block_post
            self.mode = "graphs"
            return self._run_block(i, x, rope, rows)

    # ------------------------------------------------------------------ encode
    def _encode_state(self, h: int, w: int, process_res: int) -> dict:
        key = (h, w, process_res)
        st = self._enc.get(key)
        if st is not None:
            return st
        H, W = processed_size(h, w, process_res)
        cuda = self.device.type == "cuda"
        st = {"hw": (H, W),
              "host": torch.empty((h, w, 3), dtype=torch.uint8, pin_memory=cuda),
              "dev": torch.empty((h, w, 3), dtype=torch.uint8, device=self.device),
              "event": torch.cuda.Event() if cuda else None}
        vit, net = self.vit, self.net

        def fn():
            img = st["dev"].permute(2, 0, 1)[None].float()
            if (H, W) != (h, w):
                if H > h or W > w:
                    img = F.interpolate(img, size=(H, W), mode="bicubic", align_corners=False).clamp_(0, 255)
                else:
                    img = F.interpolate(img, size=(H, W), mode="area")
            img = (img - self.mean) / self.std
            with net._autocast(self.device):
                x = vit.embed(img)
            with self._autocast_off():
                sel = x[:, 0]
                n = vit.n_early
                for i in range(n):
                    if i == n - 1:
                        sel = x[:, 0]
                    x = self._run_block(i, x)
            return x[0], sel[0]

        st["stage"] = Stage("encode", fn, self.use_graphs, self.pool)
        self._enc[key] = st
        return st

    def upload(self, image: np.ndarray, process_res: int) -> dict:
        """Copy a HxWx3 uint8 frame into the reused pinned buffer and start its upload."""
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3):
            raise ValueError(f"frames must be HxWx3 uint8 RGB, got {getattr(image, 'dtype', None)} "
                             f"{getattr(image, 'shape', None)}")
        st = self._encode_state(image.shape[0], image.shape[1], process_res)
        if st["event"] is not None:
            st["event"].synchronize()  # the previous upload from the pinned buffer is done
        np.copyto(st["host"].numpy(), image)
        st["dev"].copy_(st["host"], non_blocking=True)
        if st["event"] is not None:
            st["event"].record()
        return st

    def encode(self, image: np.ndarray, process_res: int):
        """-> (tokens (T, D), selector (D,), processed (H, W)); tensors owned by the caller."""
        st = self.upload(image, process_res)
        tok, sel = st["stage"]()
        return tok.clone(), sel.clone(), st["hw"]

    # ------------------------------------------------------------------ window
    def _window_state(self, S: int, T: int, D: int, dtype, hw, decode: Tuple[int, ...], native_hw) -> dict:
        key = (S, T, D, dtype, hw, decode, native_hw, self.pose_from, self.ref_view_strategy)
        st = self._win.get(key)
        if st is not None:
            return st
        H, W = hw
        ph, pw = H // PATCH_SIZE, W // PATCH_SIZE
        dev, vit, net = self.device, self.vit, self.net
        tok = torch.zeros((1, S, T, D), dtype=dtype, device=dev)
        sel = torch.zeros((1, S, D), dtype=dtype, device=dev)
        cos_l, sin_l, cos_g, sin_g = vit.rope.get(ph, pw, dev)
        rope_l = (cos_l, sin_l)
        rope_g = (cos_g.repeat(S, 1).contiguous(), sin_g.repeat(S, 1).contiguous())
        feat_views = list(range(S)) if self.pose_from == "ray" else list(decode)
        nf = len(feat_views)
        # index tensors made here, not inside a captured stage (no host->device copies there)
        fv_idx = torch.tensor(feat_views, dtype=torch.long, device=dev)
        fv_pos = fv_idx[None]
        dsel_idx = torch.tensor([feat_views.index(d) for d in decode], dtype=torch.long, device=dev)
        out_layers = set(vit.cfg.out_layers)
        st = {"tok": tok, "sel": sel, "decode": decode}

        last = len(vit.blocks) - 1
        # the last block is global and an out layer: only the decoded views' tokens and every
        # view's token 0 (camera token) of its output are used, so its queries (and its
        # projection / FFN rows) are restricted to those; keys and values stay complete.
        restrict = (last % 2 == 1 and last in out_layers and last > vit.alt_start and nf < S
                    and os.environ.get("DA3_LAST_BLOCK_FULL", "") != "1")
        tok_ar = torch.arange(T, device=dev)
        view_starts = torch.arange(S, device=dev) * T

        def cross():
            x = tok
            order = None
            if S >= MIN_VIEWS_FOR_REFERENCE:
                order = reference_order(sel, self.ref_view_strategy)
                x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
            cam_tok = torch.cat((vit.camera_token[:, :1], vit.camera_token[:, 1:].expand(1, S - 1, D)), 1)
            x = torch.cat((cam_tok.to(x.dtype)[:, :, None], x[:, :, 1:]), 2)
            # positions (in the reordered window) of the views whose features are needed
            if order is not None:
                inv = torch.argsort(order, dim=1)
                pos = inv.index_select(1, fv_idx)
            else:
                inv, pos = None, fv_pos
            outs, local_x = [], x
            cam_rows = None
            with self._autocast_off():
                for i in range(vit.alt_start, len(vit.blocks)):
                    if i == last and restrict:
                        xin = x.reshape(1, S * T, D)
                        rows = torch.cat(((pos[0][:, None] * T + tok_ar[None]).reshape(-1), view_starts))
                        y = self._run_block(i, xin, rope_g, rows)  # (1, nf * T + S, D)
                        x = y[:, :nf * T].reshape(1, nf, T, D)
                        cam_rows = y[:, nf * T:]
                        outs.append((local_x, x))
                        break
                    if i % 2 == 1:
                        x = self._run_block(i, x.reshape(1, S * T, D), rope_g).view(1, S, T, D)
                    else:
                        x = self._run_block(i, x.reshape(S, T, D), rope_l).view(1, S, T, D)
                        local_x = x
                    if i in out_layers:
                        outs.append((local_x, x))
            feats = []
            idx = pos[:, :, None, None].expand(1, nf, T, D)
            for j, (lx, gx) in enumerate(outs):
                gsel = gx if (cam_rows is not None and j == len(outs) - 1) else torch.gather(gx, 1, idx)
                f, _ = vit.out_features(torch.gather(lx, 1, idx), gsel)
                feats.append(f)
            lx, gx = outs[-1]
            g0 = cam_rows if cam_rows is not None else gx[:, :, 0]
            raw = torch.cat((lx[:, :, 0], g0), -1) if vit.cfg.cat_token else g0
            cam = raw.float()
            if inv is not None:
                cam = torch.gather(cam, 1, inv[:, :, None].expand_as(cam))
            return tuple(feats) + (cam,)

        st["cross"] = Stage("cross_view", cross, self.use_graphs, self.pool)

        def depth():
            feats = st["cross_out"][:4]
            with net._no_autocast(dev):
                head = net.head
                rn = head.stem([f[0].index_select(0, dsel_idx) for f in feats], H, W)
                d, c = head.forward_depth(rn, H, W)
                maps = torch.stack((d, c), 1)  # (n, 2, H, W)
                if tuple(native_hw) != (H, W):
                    maps = F.interpolate(maps.float(), size=tuple(native_hw), mode="bilinear", align_corners=False)
            return (maps.contiguous(),)

        def pose():
            out = st["cross_out"]
            feats, cam = out[:4], out[4]
            with net._no_autocast(dev):
                if self.pose_from == "ray":
                    rn = net.head.stem([f[0] for f in feats], H, W)
                    ray, ray_conf = net.head.forward_rays(rn, H, W)
                    c2w, K_n, _ = solve_rays(ray, ray_conf)
                    K = denormalize_intrinsics(K_n, H, W)
                    K[:, 0, 1] = 0.0
                    w2c = invert_rigid(c2w)
                else:
                    c2w, K = decode_pose(net.cam_dec(cam), (H, W))
                    w2c, K = invert_rigid(c2w)[0], K[0]
            return (w2c[:, :3].contiguous(), K.contiguous())

        st["depth"] = Stage("depth_head", depth, self.use_graphs, self.pool)
        st["pose"] = Stage("pose", pose, self.use_graphs, self.pool)
        if dev.type == "cuda":
            n = len(decode)
            st["host"] = (torch.empty((n, 2) + tuple(native_hw), dtype=torch.float32, pin_memory=True),
                          torch.empty((S, 3, 4), dtype=torch.float32, pin_memory=True),
                          torch.empty((S, 3, 3), dtype=torch.float32, pin_memory=True))
        self._win[key] = st
        return st

    def window(self, tokens: Sequence[torch.Tensor], selectors: Sequence[torch.Tensor], hw, decode: Sequence[int],
               native_hw, clock: Optional[Callable[[], None]] = None):
        """Run the window. Returns host tensors (maps (n, 2, h, w) depth/conf at native size,
        w2c (S, 3, 4), K (S, 3, 3) in processed pixels). `clock()` is called between stages."""
        S = len(tokens)
        T, D = tokens[0].shape
        st = self._window_state(S, T, D, tokens[0].dtype, tuple(hw), tuple(decode), tuple(native_hw))
        torch.stack(list(tokens), out=st["tok"][0])
        torch.stack(list(selectors), out=st["sel"][0])
        tick = clock or (lambda: None)
        st["cross_out"] = st["cross"]()
        tick()
        maps, = st["depth"]()
        tick()
        w2c, K = st["pose"]()
        tick()
        if self.device.type != "cuda":
            return maps, w2c, K
        hm, hw2c, hK = st["host"]
        hm.copy_(maps, non_blocking=True)
        hw2c.copy_(w2c, non_blocking=True)
        hK.copy_(K, non_blocking=True)
        torch.cuda.current_stream().synchronize()  # the one host sync per frame: fetch the results
        return hm, hw2c, hK
