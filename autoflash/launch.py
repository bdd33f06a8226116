"""Load a compiled kernel on a GPU and launch it: grid, block, shared memory.

Every template shares one kernel signature (see templates/README.md):
    (q, k, v, o, lse, heads_q, heads_kv, seq_q, seq_k, scale_log2)
with q/o of shape (batch, heads_q, seq_q, head_dim) and k/v of shape
(batch, heads_kv, seq_k, head_dim), all contiguous; lse may be null.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from autoflash.compile import CompiledKernel



class LaunchError(RuntimeError):
    """A kernel that could not be launched (resources, grid limits)."""


@dataclass
class Problem:
    """The run-time shape of one attention call."""

    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_k: int
    head_dim: int
    causal: bool

    def flops(self) -> float:
        """4 * B * H * Nq * Nk * D, halved for causal (the convention of FlashAttention's papers)."""
        f = 4.0 * self.batch * self.heads_q * self.seq_q * self.seq_k * self.head_dim
        return f / 2 if self.causal else f


class LoadedKernel:
    """A compiled kernel loaded into the current device's context."""

    MAX_PLANS = 256  # launch plans kept per kernel (one per problem shape and scale)

    def __init__(self, compiled: CompiledKernel):
        import cupy

        from autoflash.variants import VARIANTS

        self.compiled = compiled
        self.config = compiled.config
        self.variant = VARIANTS[self.config.template]
        self.smem = self.variant.smem_bytes(self.config)
        self.device_id = cupy.cuda.Device().id
        self.module = cupy.cuda.function.Module()
        self.module.load(compiled.cubin)
        self.function = self.module.get_function(self.config.name)
        if self.smem > 48 * 1024:  # above 48 KB a block must opt in to dynamic shared memory
            from cupy.cuda import driver

            driver.funcSetAttribute(self.function.ptr, driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                    self.smem)
        self._plans: dict[tuple, LaunchPlan] = {}

    def grid(self, p: Problem) -> tuple[int, int, int]:
        grid = self.variant.grid(self.config, p.batch, p.heads_q, p.seq_q)
        if grid[1] > 65535 or grid[2] > 65535:
            raise LaunchError(f"grid {grid} exceeds CUDA's 65535 limit on y/z (heads_q={p.heads_q}, batch={p.batch})")
        return grid

    def plan(self, p: Problem, scale: float) -> "LaunchPlan":
        """The launch plan for a problem: built once per (shape, causal, scale), then served
        from a bounded cache (a plan holds no pointers, so it is never stale)."""
        key = (p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_k, p.head_dim, p.causal, scale)
        plan = self._plans.get(key)
        if plan is None:
            plan = LaunchPlan(self, p, scale)
            if len(self._plans) >= self.MAX_PLANS:
                self._plans.clear()  # rare (many distinct shapes): rebuilding a plan is cheap
            self._plans[key] = plan
        return plan

    def launch(self, q_ptr: int, k_ptr: int, v_ptr: int, o_ptr: int, lse_ptr: int, p: Problem, scale: float,
               stream_ptr: int = 0) -> None:
        """Launch on a raw stream (0: CuPy's current stream)."""
        import cupy

        stream = stream_handle(stream_ptr) if stream_ptr else cupy.cuda.get_current_stream()
        self.plan(p, scale)(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, stream)


class LaunchPlan:
    """What one launch needs besides the pointers and the stream: grid, block, shared
    memory, and the kernel's argument builder with the fixed arguments converted."""

    __slots__ = ("function", "grid", "block", "smem", "args")

    def __init__(self, kernel: LoadedKernel, p: Problem, scale: float):
        cfg = kernel.config
        if p.head_dim != cfg.head_dim or p.causal != cfg.causal:
            raise LaunchError(f"kernel {cfg.name} cannot run head_dim={p.head_dim} causal={p.causal}")
        self.function = kernel.function
        self.grid = kernel.grid(p)
        self.block = (cfg.threads, 1, 1)
        self.smem = kernel.smem
        self.args = kernel.variant.launch_args(cfg, p, scale)

    def __call__(self, q: int, k: int, v: int, o: int, lse: int, stream) -> None:
        """stream: a CuPy stream object (stream_handle wraps a raw one)."""
        self.function(self.grid, self.block, self.args(q, k, v, o, lse), shared_mem=self.smem, stream=stream)


class _StreamHandle:
    """A raw cudaStream_t seen through the CUDA stream protocol."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __cuda_stream__(self):
        return (0, self.ptr)


def external_stream(ptr: int):
    """A CuPy stream object for a stream another framework (e.g. PyTorch) owns."""
    import cupy

    if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy 14+
        return cupy.cuda.Stream.from_external(_StreamHandle(ptr))
    return cupy.cuda.ExternalStream(ptr)  # CuPy 13 (the cu12 extra)


_STREAMS: dict[int, object] = {}


def stream_handle(ptr: int):
    """external_stream(ptr), made once per pointer. The object holds nothing but the
    pointer (it never destroys the stream), so a pointer reused by a new stream is
    still served correctly."""
    stream = _STREAMS.get(ptr)
    if stream is None:
        if len(_STREAMS) >= 256:
            _STREAMS.clear()
        stream = _STREAMS[ptr] = external_stream(ptr)
    return stream


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
