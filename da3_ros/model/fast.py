"""Optimised incremental path of `DA3WindowModel`: the model's own steps, run as fixed-shape stages.

Nothing here re-implements the network. Each stage calls the model's methods on
static buffers, exactly as the plain path (`DA3Net.encode` + `DA3Net.forward_window`)
does:

* `encode`: uint8 frame -> ONE reused pinned host buffer -> non-blocking upload ->
  `preprocess.network_input` -> `DA3Net.encode_tokens`. Tokens are copied into the
  frame's handle (the cache).
* `cross_view`: cached tokens of the window -> `DA3Net.forward_features` (reference
  order on the device, cross-view blocks, head inputs of the views that need them).
* `depth_head`: `DA3Net.forward_depth` on the decoded views, resized to native size
  (`preprocess.map_to_native`).
* `pose`: `DA3Net.forward_pose` (camera decoder, or ray head + solver) for every view.
  These two are the plain path's one head path (`DA3Net.forward_heads`), run as stages.

What this module adds is how they run:

* CUDA graphs: each stage is captured once per shape (warm-up at start-up) and
  replayed; no per-frame launches from Python, no host synchronisation except the
  one fetch of the published results (one pinned buffer per output, one stream sync).
* torch.compile: the ViT's blocks are wrapped (`torch.compile(block)` shares the
  module and its parameters) and handed to the model's loops (`blocks=`), so
  inductor fuses LayerNorm, QK-norm, RoPE, LayerScale and the residual adds of the
  one `vit.Block`. Shapes are static for the first window size warmed up (the
  deployed one) and dynamic for the others (torch's automatic dynamic shapes).
* The attention kernel: per block, the fastest SDPA backend whose output matches
  PyTorch's default on that block's shapes becomes its `Attention.kernel` (the
  model's one switch; `Kernels.attention` = flash|cudnn|efficient|math|default forces one).
* Under bf16/fp16 the blocks' Linear weights are stored in that dtype (what autocast
  casts them to on every call anyway: bit-identical under autocast); on CUDA the heads'
  convolution weights are kept channels-last (`Kernels.head_channels_last=False`: as loaded).

The kernel switches are settings (`Kernels`, from the settings attention_kernel,
head_channels_last, compile_dynamic and inductor_mode), not environment variables.

On the CPU, mode "staged" runs the same stages without graphs or compilation: the
tests exercise this code with the CPU.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .config import PATCH_SIZE
from .net import DA3Net
from .preprocess import map_to_native, network_input, processed_size
from .vit import attention

COMPILE_MODES = ("off", "staged", "graphs", "inductor", "auto")
#: Kernels.attention: auto (timed per block at warm-up), one SDPA backend, or PyTorch's default choice
ATTENTION_KERNELS = ("auto", "flash", "cudnn", "efficient", "math", "default")


@dataclass(frozen=True)
class Kernels:
    """The fast path's kernel switches (on CUDA; the CPU's staged path ignores them)."""

    #: the SDPA backend of every block: "auto" times them per block shape at warm-up
    attention: str = "auto"
    #: the heads' convolution weights in channels-last layout
    head_channels_last: bool = True
    #: torch.compile with dynamic shapes from the first call (one graph for every size);
    #: False: static for the first shape seen (the deployed window), dynamic later
    compile_dynamic: bool = False
    #: torch.compile mode ("" : torch's default; e.g. max-autotune-no-cudagraphs)
    inductor_mode: str = ""

    def __post_init__(self):
        if self.attention not in ATTENTION_KERNELS:
            raise ValueError(f"attention kernel must be one of {ATTENTION_KERNELS}, got {self.attention!r}")


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


# ---------------------------------------------------------------------- attention kernel
class AttentionTuner:
    """Chooses `Attention.kernel` per block from timings on the block's own shapes (CUDA).

    Keeps the fastest backend whose output matches PyTorch's default choice (bf16
    noise); a block keeps its first choice (the deployed window is warmed up first)."""

    def __init__(self, enabled: bool, log: Optional[Callable[[str], None]] = None, force: str = "auto"):
        self.enabled = enabled
        self.log = log or (lambda m: None)
        self.force = force
        self.choice: Dict[tuple, Optional[str]] = {}
        self._tuned: set = set()

    def tune(self, attns: Iterable[nn.Module], q_shape: tuple, k_shape: tuple, dtype: torch.dtype,
             device: torch.device) -> None:
        attns = [a for a in attns if id(a) not in self._tuned]
        if not attns or not self.enabled:
            return
        key = (tuple(q_shape), tuple(k_shape), dtype)
        if key not in self.choice:
            self.choice[key] = self._time(q_shape, k_shape, dtype, device)
        for a in attns:
            a.kernel = self.choice[key]
            self._tuned.add(id(a))

    def _time(self, q_shape, k_shape, dtype, device) -> Optional[str]:
        if self.force in ("flash", "cudnn", "efficient", "math"):
            return self.force
        if self.force == "default":
            return None
        g = torch.Generator(device=device).manual_seed(0)
        q = torch.randn(q_shape, generator=g, device=device, dtype=dtype)
        k = torch.randn(k_shape, generator=g, device=device, dtype=dtype)
        v = torch.randn(k_shape, generator=g, device=device, dtype=dtype)
        ref = attention(q, k, v)
        scale = float(ref.abs().max()) + 1e-6
        best, best_ms, report = None, float("inf"), []
        for name in ("cudnn", "flash", "efficient"):
            try:
                out = attention(q, k, v, name)
                if float((out.float() - ref.float()).abs().max()) > 2e-2 * scale:
                    report.append(f"{name}: mismatch")
                    continue
                torch.cuda.synchronize(device)
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(5):
                    attention(q, k, v, name)
                e1.record()
                torch.cuda.synchronize(device)
                ms = e0.elapsed_time(e1) / 5
            except Exception as exc:  # backend unsupported for this shape / build
                report.append(f"{name}: n/a ({type(exc).__name__})")
                continue
            report.append(f"{name}: {ms:.3f} ms")
            if ms < best_ms:
                best, best_ms = name, ms
        self.log(f"sdpa q{tuple(q_shape)} k{tuple(k_shape)} {dtype}: " + ", ".join(report) + f" -> {best or 'default'}")
        return best


# ---------------------------------------------------------------------- stages
class Stage:
    """A function of static input buffers, replayed as a CUDA graph when enabled.

    `fn()` reads its inputs from tensors it closes over and returns a tuple of
    tensors; with a graph the returned tensors are the graph's static outputs
    (overwritten by the next replay)."""

    def __init__(self, name: str, fn: Callable[[], Tuple[torch.Tensor, ...]], graph: bool, pool=None,
                 log: Optional[Callable[[str], None]] = None):
        self.name, self.fn, self.use_graph, self.pool = name, fn, graph, pool
        self.log = log or (lambda m: None)
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
            msg = (f"CUDA graph capture of stage {self.name!r} failed ({type(exc).__name__}: {exc}); "
                   "running it eagerly")
            warnings.warn(msg)
            self.log(msg)
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

    def __init__(self, net: DA3Net, device: torch.device, mode: str, pose_source: str, reference_strategy: str,
                 ray_map: str = "quarter", log: Optional[Callable[[str], None]] = None,
                 kernels: Optional[Kernels] = None):
        if not (isinstance(net, DA3Net) and net.cfg.any_view):
            raise TypeError("the fast path serves any-view DA3Net models")
        self.net, self.vit, self.device, self.mode = net, net.vit, device, mode
        self.pose_source, self.reference_strategy, self.ray_map = pose_source, reference_strategy, ray_map
        self.amp = net.amp_dtype
        self.kernels = kernels or Kernels()
        cuda = device.type == "cuda"
        self.use_graphs = mode in ("graphs", "inductor") and cuda
        self.pool = torch.cuda.graph_pool_handle() if self.use_graphs else None
        self.log = log or (lambda m: None)
        store_linear_weights_in(self.vit, self.amp)
        if cuda and self.kernels.head_channels_last:
            # the heads' convolutions in channels-last layout (cuDNN's native one for tensor-core
            # convolutions; the same arithmetic, other kernels): the weights carry the layout on
            net.head.to(memory_format=torch.channels_last)
        self.tuner = AttentionTuner(cuda and mode in ("graphs", "inductor"), lambda m: self.log(m),
                                    self.kernels.attention)
        self.blocks: Optional[Sequence[nn.Module]] = None  # None: the modules themselves
        if mode == "inductor" and cuda:
            self.blocks = self._compiled_blocks()
        self._enc: Dict[tuple, dict] = {}
        self._win: Dict[tuple, dict] = {}
        #: stage sets made (each one a capture per stage with CUDA graphs), and how many of
        #: them came after `warm` was set (warm-up done): 0 when warm-up covered the stream
        self.new_shapes = 0
        self.shapes_after_warmup = 0
        self.warm = False

    def _compiled_blocks(self):
        from torch import _dynamo

        # one code object (Block.forward) serves every block kind and shape: allow its variants
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(_dynamo.config, name):
                setattr(_dynamo.config, name, max(getattr(_dynamo.config, name), 64))
        # compile_dynamic: dynamic shapes from the first call (one graph for every size);
        # default: static for the first shape seen (the deployed window, warmed up first), then
        # automatic dynamic shapes for the dims that change
        dyn = True if self.kernels.compile_dynamic else None
        mode = self.kernels.inductor_mode or None  # e.g. max-autotune-no-cudagraphs
        return [torch.compile(b, dynamic=dyn, fullgraph=True, mode=mode) for b in self.vit.blocks]

    def reset(self) -> None:
        """Drop every captured graph and static buffer (their memory goes back to the allocator)."""
        self._enc.clear()
        self._win.clear()
        if self.use_graphs:
            torch.cuda.synchronize(self.device)
            self.pool = torch.cuda.graph_pool_handle()

    def _run(self, stage: Stage) -> Tuple[torch.Tensor, ...]:
        try:
            return stage()
        except Exception as exc:  # inductor unavailable / failing: the same modules, eager
            if self.blocks is None:
                raise
            msg = f"torch.compile of the ViT blocks failed ({type(exc).__name__}: {exc}); running eager"
            warnings.warn(msg)
            self.log(msg)
            self.blocks, self.mode = None, "graphs"
            stage.graph, stage.out = None, None
            return stage()

    # ------------------------------------------------------------------ encode
    def _encode_state(self, h: int, w: int, process_res: int) -> dict:
        key = (h, w, process_res)
        st = self._enc.get(key)
        if st is not None:
            return st
        H, W = processed_size(h, w, process_res)
        self.new_shapes += 1
        if self.warm:
            self.shapes_after_warmup += 1
        cuda = self.device.type == "cuda"
        st = {"hw": (H, W),
              "host": torch.empty((h, w, 3), dtype=torch.uint8, pin_memory=cuda),
              "dev": torch.empty((1, h, w, 3), dtype=torch.uint8, device=self.device),
              "event": torch.cuda.Event() if cuda else None}
        vit, heads, hd = self.vit, self.vit.cfg.num_heads, self.vit.cfg.head_dim
        T = 1 + (H // PATCH_SIZE) * (W // PATCH_SIZE)
        self.tuner.tune((vit.blocks[i].attn for i in range(vit.n_early)), (1, heads, T, hd), (1, heads, T, hd),
                        self.amp or torch.float32, self.device)

        def fn():
            tok, sel = self.net.encode_tokens(network_input(st["dev"], (H, W)), self.blocks)
            return tok[0], sel[0]

        st["stage"] = Stage("encode", fn, self.use_graphs, self.pool, lambda m: self.log(m))
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
        st["dev"][0].copy_(st["host"], non_blocking=True)
        if st["event"] is not None:
            st["event"].record()
        return st

    def encode(self, image: np.ndarray, process_res: int):
        """-> (tokens (T, D), selector (D,), processed (H, W)); tensors owned by the caller."""
        st = self.upload(image, process_res)
        tok, sel = self._run(st["stage"])
        return tok.clone(), sel.clone(), st["hw"]

    # ------------------------------------------------------------------ window
    def window_key(self, S: int, T: int, D: int, dtype, hw, n_views: int, n_decode: int, native_hw) -> tuple:
        """The fixed shape of a window's stages: sizes only. Which views are kept and
        decoded are index buffers filled before each run, so the same stages (and
        graphs) serve every choice of views of that size."""
        return (S, T, D, dtype, tuple(hw), n_views, n_decode, tuple(native_hw), self.pose_source,
                self.reference_strategy, self.ray_map)

    def _window_state(self, S: int, T: int, D: int, dtype, hw, decode: Tuple[int, ...], native_hw) -> dict:
        views = self.net.window_views(S, decode, self.pose_source)
        key = self.window_key(S, T, D, dtype, hw, len(views), len(decode), native_hw)
        st = self._win.get(key)
        if st is None:
            st = self._new_window_state(key, S, T, D, dtype, hw, len(views), len(decode), native_hw)
        st["views"].copy_(torch.tensor(views, dtype=torch.long), non_blocking=True)
        st["dpos"].copy_(torch.tensor([views.index(d) for d in decode], dtype=torch.long), non_blocking=True)
        return st

    def _new_window_state(self, key, S, T, D, dtype, hw, n_views, n_decode, native_hw) -> dict:
        self.new_shapes += 1
        if self.warm:
            self.shapes_after_warmup += 1
            self.log(f"window shape {key[:1] + key[5:7]} (views, kept, decoded) met after warm-up: "
                     "a new capture while streaming")
        dev, net = self.device, self.net
        # index tensors made here, not inside a captured stage (no host->device copies there)
        st = {"tok": torch.zeros((1, S, T, D), dtype=dtype, device=dev),
              "sel": torch.zeros((1, S, D), dtype=dtype, device=dev),
              "views": torch.arange(n_views, dtype=torch.long, device=dev),
              "dpos": torch.arange(n_decode, dtype=torch.long, device=dev)}
        self._tune_window(S, T, n_views)

        def cross():
            feats, cam = net.forward_features(st["tok"], st["sel"], hw, reference_strategy=self.reference_strategy,
                                              views=st["views"], blocks=self.blocks)
            return tuple(feats) + (cam,)

        def depth():
            feats = [f.index_select(1, st["dpos"]) for f in st["cross_out"][:4]]
            d, c = net.forward_depth(feats, hw)
            maps = map_to_native(torch.cat((d[0], c[0]), 0), tuple(native_hw))  # (2n, h, w): depths, then confs
            return (maps.unflatten(0, (2, n_decode)).transpose(0, 1).contiguous(),)

        def pose():
            out = st["cross_out"]
            w2c, K = net.forward_pose(list(out[:4]), out[4], hw, self.pose_source, self.ray_map)
            return (w2c[0].contiguous(), K[0].contiguous())

        st["cross"] = Stage("cross_view", cross, self.use_graphs, self.pool, lambda m: self.log(m))
        st["depth"] = Stage("depth_head", depth, self.use_graphs, self.pool, lambda m: self.log(m))
        st["pose"] = Stage("pose", pose, self.use_graphs, self.pool, lambda m: self.log(m))
        if dev.type == "cuda":
            st["host"] = (torch.empty((n_decode, 2) + tuple(native_hw), dtype=torch.float32, pin_memory=True),
                          torch.empty((S, 3, 4), dtype=torch.float32, pin_memory=True),
                          torch.empty((S, 3, 3), dtype=torch.float32, pin_memory=True))
        self._win[key] = st
        return st

    def _tune_window(self, S: int, T: int, n_views: int) -> None:
        vit, dt = self.vit, self.amp or torch.float32
        heads, hd, last = vit.cfg.num_heads, vit.cfg.head_dim, len(vit.blocks) - 1
        late = range(vit.alt_start, len(vit.blocks))
        local = [vit.blocks[i].attn for i in late if i % 2 == 0]
        glob = [vit.blocks[i].attn for i in late if i % 2 == 1 and i != last]
        self.tuner.tune(local, (S, heads, T, hd), (S, heads, T, hd), dt, self.device)
        self.tuner.tune(glob, (1, heads, S * T, hd), (1, heads, S * T, hd), dt, self.device)
        if last % 2 == 1:  # the last block answers the kept views' tokens and the camera tokens
            rows = n_views * T + S if last in vit.cfg.out_layers else S * T
            self.tuner.tune([vit.blocks[last].attn], (1, heads, rows, hd), (1, heads, S * T, hd), dt, self.device)

    def window(self, tokens: Sequence[torch.Tensor], selectors: Sequence[torch.Tensor], hw, decode: Sequence[int],
               native_hw, clock: Optional[Callable[[], None]] = None):
        """Run the window. Returns host tensors (maps (n, 2, h, w) depth/conf at native size,
        w2c (S, 3, 4), K (S, 3, 3) in processed pixels). `clock()` is called between stages."""
        S = len(tokens)
        T, D = tokens[0].shape
        st = self._window_state(S, T, D, tokens[0].dtype, tuple(hw), tuple(int(d) for d in decode),
                                tuple(native_hw))
        torch.stack(list(tokens), out=st["tok"][0])
        torch.stack(list(selectors), out=st["sel"][0])
        tick = clock or (lambda: None)
        st["cross_out"] = self._run(st["cross"])
        tick()
        maps, = self._run(st["depth"])
        tick()
        w2c, K = self._run(st["pose"])
        tick()
        if self.device.type != "cuda":
            return maps, w2c, K
        hm, hw2c, hK = st["host"]
        hm.copy_(maps, non_blocking=True)
        hw2c.copy_(w2c, non_blocking=True)
        hK.copy_(K, non_blocking=True)
        torch.cuda.current_stream().synchronize()  # the one host sync per frame: fetch the results
        return hm, hw2c, hK
