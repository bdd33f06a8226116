"""The forward's host side on a GPU: launch plans, checked launches, timing inputs.
CuPy is imported where it is used, so the CPU-only pipeline can import this module."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from autoflash.kernels.arrays import poisoned, random_normal, to_float64
from autoflash.kernels.loaded import LaunchError, LoadedKernel, ensure_context, stream_handle
from autoflash.kernels.packed_sequence import PackedSequence, Slot
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE, VARIANT_FLAGS, Problem
from autoflash.ops.reference import Check, compare, reference_attention


# (batch, heads_q, heads_kv, seq_q, seq_k) every forward template is checked on in the GPU tests and
# probes: odd lengths (1, 17, 1000, 4097), Nq != Nk both ways, GQA and MQA.
CHECK_SHAPES = [
    (1, 2, 2, 1, 1),
    (2, 2, 1, 17, 17),
    (1, 4, 2, 1000, 1000),
    (1, 2, 2, 17, 1000),
    (1, 3, 1, 1000, 17),
    (1, 1, 1, 4097, 4097),
    (1, 2, 1, 4097, 1000),
]


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)


class LaunchPlan:
    """What one launch needs besides the pointers and the stream: grid, block, shared
    memory, and the kernel's argument builder with the fixed arguments converted."""

    __slots__ = ("function", "grid", "block", "smem", "args", "_packed")

    def __init__(self, kernel: LoadedKernel, p: Problem, scale: float):
        cfg = kernel.config
        if p.head_dim != cfg.head_dim or p.head_dim_v != cfg.head_dim_v or p.causal != cfg.causal:
            raise LaunchError(f"kernel {cfg.name} cannot run head_dim={p.head_dim} head_dim_v={p.head_dim_v} "
                              f"causal={p.causal}")
        needs = p.variant_flags()
        if any(needs[f] != getattr(cfg, f) for f in VARIANT_FLAGS):
            raise LaunchError(f"kernel {cfg.name} has variants {[f for f in VARIANT_FLAGS if getattr(cfg, f)]}, "
                              f"the problem needs {[f for f in VARIANT_FLAGS if needs[f]]}")
        self.function = kernel.function
        self.grid = kernel.template.grid(cfg, p)
        if self.grid[1] > 65535 or self.grid[2] > 65535:
            raise LaunchError(f"grid {self.grid} exceeds CUDA's 65535 limit on y/z (heads_q={p.heads_q}, "
                              f"batch={p.batch})")
        self.block = (cfg.threads, 1, 1)
        self.smem = kernel.smem
        self.args = kernel.template.launch_args(cfg, p, scale)
        self._packed = None

    def packed(self, q: int, k: int, v: int, o: int, lse: int) -> PackedSequence:
        """This plan's arguments packed for the driver (built on the first call, from its pointers): the
        per-call path of attention() (serve/call_plans.py); call it with (q, k, v, o, lse) and a raw stream.
        Its TMA maps are built anew when a pointer they embed moves (args.struct_pointers: q, k, v, and o
        with O's map)."""
        if self._packed is None:
            ensure_context()  # args() may encode TMA maps, a driver call: this thread may have made no CUDA call yet
            pointers = (q, k, v, o, lse)
            launch = (self.function, self.grid, self.block, self.smem,
                      tuple(Slot(i) for i in range(len(pointers))) + self.args(*pointers)[len(pointers):])
            self._packed = PackedSequence([launch], lambda ptrs: (self.args(*ptrs),),
                                          getattr(self.args, "struct_pointers", 3), pointers)
        return self._packed

    def __call__(self, q: int, k: int, v: int, o: int, lse: int, stream) -> None:
        """stream: a CuPy stream object (stream_handle wraps a raw one)."""
        ensure_context()  # args() may encode TMA maps, a driver call
        self.function(self.grid, self.block, self.args(q, k, v, o, lse), shared_mem=self.smem, stream=stream)


def plan(kernel: LoadedKernel, p: Problem, scale: float) -> LaunchPlan:
    """The launch plan for a problem, built once per (every field of the problem, scale) and kernel
    (the device pointers a plan keeps, varlen's and the variants', are problem fields: never stale)."""
    return kernel.cached_plan((p.fields(), scale), lambda: LaunchPlan(kernel, p, scale))


def launch(kernel: LoadedKernel, q_ptr: int, k_ptr: int, v_ptr: int, o_ptr: int, lse_ptr: int, p: Problem,
           scale: float, stream_ptr: int = 0) -> None:
    """Launch on a raw stream (0: CuPy's current stream)."""
    import cupy

    stream = stream_handle(stream_ptr) if stream_ptr else cupy.cuda.get_current_stream()
    plan(kernel, p, scale)(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, stream)


def random_inputs(p: Problem, dtype: str, seed: int):
    """Standard-normal q, k, v (never zeros), in the kernel's element type; v has V's head dim."""
    import cupy

    rng = cupy.random.default_rng(seed)
    q = random_normal(rng, (p.batch, p.heads_q, p.seq_q, p.head_dim), dtype)
    k = random_normal(rng, (p.batch, p.heads_kv, p.seq_k, p.head_dim), dtype)
    v = random_normal(rng, (p.batch, p.heads_kv, p.seq_k, p.dim_v), dtype)
    return q, k, v


def alibi_slopes(heads: int) -> np.ndarray:
    """The usual ALiBi slopes (Press et al.): 2^(-8 (h + 1) / heads) per head, float32."""
    return (2.0 ** (-8.0 * np.arange(1, heads + 1) / heads)).astype(np.float32)


def _device_f32(values):
    import cupy

    return None if values is None else cupy.asarray(np.asarray(values, dtype=np.float32))


def with_variant_arrays(p: Problem, sinks, slopes) -> Problem:
    """p with the device pointers of its sinks (Hq,) and ALiBi slopes ((Hq,) or (B, Hq)) set."""
    return dataclasses.replace(p, sinks=0 if sinks is None else sinks.data.ptr,
                               alibi_slopes=0 if slopes is None else slopes.data.ptr,
                               alibi_batch_stride=p.heads_q if slopes is not None and slopes.ndim == 2 else 0)


def run_checked(kernel: LoadedKernel, p: Problem, seed: int = 0, scale: float | None = None,
                with_lse: bool = True, sinks=None, alibi_slopes=None) -> Check:
    """Launch once on fresh inputs into NaN-poisoned outputs; compare with the float64 reference.
    p carries the causal offset, window and softcap; sinks ((Hq,)) and alibi_slopes ((Hq,) or
    (B, Hq)) are host values, copied to the device here (their pointers in p are replaced)."""
    import cupy

    dtype = kernel.config.dtype
    scale = default_scale(p.head_dim) if scale is None else scale
    q, k, v = random_inputs(p, dtype, seed)
    out = poisoned(q.shape[:3] + (p.dim_v,), dtype)
    lse = cupy.full(q.shape[:3], cupy.nan, dtype=cupy.float32) if with_lse else None
    d_sinks, d_slopes = _device_f32(sinks), _device_f32(alibi_slopes)
    p = with_variant_arrays(p, d_sinks, d_slopes)
    launch(kernel, q.data.ptr, k.data.ptr, v.data.ptr, out.data.ptr, lse.data.ptr if with_lse else 0, p, scale)
    cupy.cuda.get_current_stream().synchronize()
    ref, ref_lse = reference_attention(to_float64(q, dtype), to_float64(k, dtype), to_float64(v, dtype),
                                       causal=p.causal, scale=scale, causal_offset=p.causal_offset,
                                       window=(p.window_left, p.window_right), softcap=p.softcap,
                                       sinks=d_sinks, alibi_slopes=d_slopes)
    return compare(to_float64(out, dtype), ref, dtype, lse, ref_lse if with_lse else None)


def timing_inputs(p: Problem, dtype: str, seed: int, sinks=None, alibi_slopes=None) -> tuple:
    """(q, k, v, o, lse, sinks, slopes) on the device: one input set of the timing rotation
    (sinks and slopes from host values, None when the problem has none)."""
    import cupy

    q, k, v = random_inputs(p, dtype, seed)
    o = cupy.empty(q.shape[:3] + (p.dim_v,), dtype=q.dtype)
    return (q, k, v, o, cupy.empty((p.batch, p.heads_q, p.seq_q), dtype=cupy.float32),
            _device_f32(sinks), _device_f32(alibi_slopes))


def prepared_launch(kernel: LoadedKernel, p: Problem, scale: float, inputs: tuple):
    """launch() on one input set with the grid, arguments and any TMA descriptor built
    beforehand: only the launch itself sits between a timing pair of events."""
    import cupy

    if len(inputs) > 5:
        p = with_variant_arrays(p, *inputs[5:7])
    lp = plan(kernel, p, scale)
    args = lp.args(*(x.data.ptr for x in inputs[:5]))
    stream = cupy.cuda.get_current_stream()

    def run() -> None:
        lp.function(lp.grid, lp.block, args, shared_mem=lp.smem, stream=stream)

    return run


def cu_seqlens(lengths) -> np.ndarray:
    """[0, l0, l0 + l1, ...] as int32: flash-attn's cu_seqlens of a list of lengths."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)


def run_varlen_checked(kernel: LoadedKernel, lens_q, lens_k, heads_q: int, heads_kv: int, *,
                       bottom_right: bool = True, seqused_k=None, seed: int = 0, scale: float | None = None,
                       window: tuple[int, int] = (-1, -1), softcap: float = 0.0, sinks=None,
                       alibi_slopes=None) -> Check:
    """One varlen launch on packed random q (sum(lens_q), Hq, D), k/v (sum(lens_k), Hkv, D) into
    NaN-poisoned outputs (LSE (Hq, total_q)), checked against the float64 reference run sequence by
    sequence (its own offset: used keys - lens_q[b] when bottom_right). seqused_k: keys used per
    sequence (<= lens_k[b]), None = all. alibi_slopes (Hq,) or (B, Hq)."""
    import cupy

    cfg = kernel.config
    dtype, d, batch = cfg.dtype, cfg.head_dim, len(lens_q)
    scale = default_scale(d) if scale is None else scale
    cq, ck = cu_seqlens(lens_q), cu_seqlens(lens_k)
    rng = cupy.random.default_rng(seed)
    q = random_normal(rng, (int(cq[-1]), heads_q, d), dtype)
    k = random_normal(rng, (int(ck[-1]), heads_kv, d), dtype)
    v = random_normal(rng, (int(ck[-1]), heads_kv, d), dtype)
    out = poisoned(q.shape, dtype)
    lse = cupy.full((heads_q, q.shape[0]), cupy.nan, dtype=cupy.float32)
    d_cq, d_ck = cupy.asarray(cq), cupy.asarray(ck)
    used = np.asarray(lens_k if seqused_k is None else seqused_k, dtype=np.int32)
    d_used = None if seqused_k is None else cupy.asarray(used)
    d_sinks, d_slopes = _device_f32(sinks), _device_f32(alibi_slopes)
    packed_q, packed_kv = (0, d, heads_q * d), (0, d, heads_kv * d)  # batch strides: ignored by varlen
    p = Problem(batch, heads_q, heads_kv, int(max(lens_q)), int(max(lens_k)), d, cfg.causal,
                causal_offset=BOTTOM_RIGHT_PER_SEQUENCE if bottom_right else 0,
                strides=(packed_q, packed_kv, packed_kv, packed_q), cu_seqlens_q=d_cq.data.ptr,
                cu_seqlens_k=d_ck.data.ptr, seqused_k=0 if d_used is None else d_used.data.ptr,
                window_left=window[0], window_right=window[1], softcap=softcap, total_q=q.shape[0],
                total_k=k.shape[0])
    p = with_variant_arrays(p, d_sinks, d_slopes)
    launch(kernel, q.data.ptr, k.data.ptr, v.data.ptr, out.data.ptr, lse.data.ptr, p, scale)
    cupy.cuda.get_current_stream().synchronize()
    q64, k64, v64 = (to_float64(x, dtype) for x in (q, k, v))
    ref = cupy.empty_like(q64)
    ref_lse = cupy.empty(lse.shape, dtype=cupy.float64)
    for b in range(batch):
        qs, ks = slice(int(cq[b]), int(cq[b + 1])), slice(int(ck[b]), int(ck[b]) + int(used[b]))
        slopes = d_slopes if d_slopes is None or d_slopes.ndim == 1 else d_slopes[b]
        o_b, l_b = reference_attention(
            q64[qs].transpose(1, 0, 2)[None], k64[ks].transpose(1, 0, 2)[None], v64[ks].transpose(1, 0, 2)[None],
            causal=cfg.causal, scale=scale, causal_offset=int(used[b]) - int(lens_q[b]) if bottom_right else 0,
            window=window, softcap=softcap, sinks=d_sinks, alibi_slopes=slopes)
        ref[qs] = o_b[0].transpose(1, 0, 2)
        ref_lse[:, qs] = l_b[0]
    return compare(to_float64(out, dtype), ref, dtype, lse, ref_lse)
