"""The forward's host side on a GPU: launch plans, checked launches, timing inputs.
CuPy is imported where it is used, so the CPU-only pipeline can import this module."""
from __future__ import annotations

import math

from autoflash.kernels.arrays import poisoned, random_normal, to_float64
from autoflash.kernels.loaded import LaunchError, LoadedKernel, stream_handle
from autoflash.ops.forward_base import Problem
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

    __slots__ = ("function", "grid", "block", "smem", "args")

    def __init__(self, kernel: LoadedKernel, p: Problem, scale: float):
        cfg = kernel.config
        if p.head_dim != cfg.head_dim or p.causal != cfg.causal:
            raise LaunchError(f"kernel {cfg.name} cannot run head_dim={p.head_dim} causal={p.causal}")
        self.function = kernel.function
        self.grid = kernel.template.grid(cfg, p)
        if self.grid[1] > 65535 or self.grid[2] > 65535:
            raise LaunchError(f"grid {self.grid} exceeds CUDA's 65535 limit on y/z (heads_q={p.heads_q}, "
                              f"batch={p.batch})")
        self.block = (cfg.threads, 1, 1)
        self.smem = kernel.smem
        self.args = kernel.template.launch_args(cfg, p, scale)

    def __call__(self, q: int, k: int, v: int, o: int, lse: int, stream) -> None:
        """stream: a CuPy stream object (stream_handle wraps a raw one)."""
        self.function(self.grid, self.block, self.args(q, k, v, o, lse), shared_mem=self.smem, stream=stream)


def plan(kernel: LoadedKernel, p: Problem, scale: float) -> LaunchPlan:
    """The launch plan for a problem, built once per (shape, causal, offset, strides, scale) and kernel
    (a plan holds no pointers, so it is never stale)."""
    key = (p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_k, p.head_dim, p.causal, p.causal_offset, p.strides,
           scale)
    return kernel.cached_plan(key, lambda: LaunchPlan(kernel, p, scale))


def launch(kernel: LoadedKernel, q_ptr: int, k_ptr: int, v_ptr: int, o_ptr: int, lse_ptr: int, p: Problem,
           scale: float, stream_ptr: int = 0) -> None:
    """Launch on a raw stream (0: CuPy's current stream)."""
    import cupy

    stream = stream_handle(stream_ptr) if stream_ptr else cupy.cuda.get_current_stream()
    plan(kernel, p, scale)(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, stream)


def random_inputs(p: Problem, dtype: str, seed: int):
    """Standard-normal q, k, v (never zeros), in the kernel's element type."""
    import cupy

    rng = cupy.random.default_rng(seed)
    q = random_normal(rng, (p.batch, p.heads_q, p.seq_q, p.head_dim), dtype)
    k = random_normal(rng, (p.batch, p.heads_kv, p.seq_k, p.head_dim), dtype)
    v = random_normal(rng, (p.batch, p.heads_kv, p.seq_k, p.head_dim), dtype)
    return q, k, v


def run_checked(kernel: LoadedKernel, p: Problem, seed: int = 0, scale: float | None = None,
                with_lse: bool = True) -> Check:
    """Launch once on fresh inputs into NaN-poisoned outputs; compare with the float64 reference."""
    import cupy

    dtype = kernel.config.dtype
    scale = default_scale(p.head_dim) if scale is None else scale
    q, k, v = random_inputs(p, dtype, seed)
    out = poisoned(q.shape, dtype)
    lse = cupy.full(q.shape[:3], cupy.nan, dtype=cupy.float32) if with_lse else None
    launch(kernel, q.data.ptr, k.data.ptr, v.data.ptr, out.data.ptr, lse.data.ptr if with_lse else 0, p, scale)
    cupy.cuda.get_current_stream().synchronize()
    ref, ref_lse = reference_attention(to_float64(q, dtype), to_float64(k, dtype), to_float64(v, dtype),
                                       causal=p.causal, scale=scale)
    return compare(to_float64(out, dtype), ref, dtype, lse, ref_lse if with_lse else None)


def timing_inputs(p: Problem, dtype: str, seed: int) -> tuple:
    """(q, k, v, o, lse) on the device: one input set of the timing rotation."""
    import cupy

    q, k, v = random_inputs(p, dtype, seed)
    return q, k, v, cupy.empty_like(q), cupy.empty((p.batch, p.heads_q, p.seq_q), dtype=cupy.float32)


def prepared_launch(kernel: LoadedKernel, p: Problem, scale: float, inputs: tuple):
    """launch() on one input set with the grid, arguments and any TMA descriptor built
    beforehand: only the launch itself sits between a timing pair of events."""
    import cupy

    lp = plan(kernel, p, scale)
    args = lp.args(*(x.data.ptr for x in inputs))
    stream = cupy.cuda.get_current_stream()

    def run() -> None:
        lp.function(lp.grid, lp.block, args, shared_mem=lp.smem, stream=stream)

    return run
