"""The backward's GPU side (runner process and serve/autograd.py; CuPy imported where used):
the launch plan of the three kernels, the float64 reference gradients, checked launches, and
the timing inputs of the op contract."""
from __future__ import annotations

from dataclasses import astuple

import numpy as np

from autoflash.kernels.arrays import poisoned, random_normal, to_float64, to_storage
from autoflash.kernels.elements import LOG2E
from autoflash.ops.backward_kernels import PAD_M, TOLERANCE, BackwardProblem, default_scale
from autoflash.ops.reference import Check

ZERO_FLOOR = 1e-3  # see compare_gradients


class BackwardLaunch:
    """The three launches of one problem on one loaded module: grids, fixed arguments and
    the workspace layout, computed once; __call__ takes only pointers and a stream."""

    def __init__(self, kernel, p: BackwardProblem, scale: float):
        cfg = kernel.config
        if (p.head_dim, p.causal) != (cfg.head_dim, cfg.causal):
            raise ValueError(f"kernel {cfg.name} cannot run head_dim={p.head_dim} causal={p.causal}")
        bh = p.batch * p.heads_q
        if max(bh, p.heads_kv, p.batch) > 65535:
            raise ValueError(f"batch x heads_q = {bh} exceeds the kernels' grid limit (65535)")
        self.pre, self.main, self.conv = kernel.function_named("_pre"), kernel.function, kernel.function_named("_dq")
        self.smem = kernel.smem
        seq_q_pad = -(-p.seq_q // PAD_M) * PAD_M
        n_q_tiles = -(-p.seq_q // cfg.block_m)
        sizes = [bh * seq_q_pad * 4, bh * seq_q_pad * 4, bh * p.seq_q * p.head_dim * 4,
                 bh * n_q_tiles * 4 if cfg.deterministic else 0]  # lse2, delta, dQ accumulator, counters
        self.offsets, total = [], 0
        for size in sizes:
            self.offsets.append(total)
            total += -(-size // 256) * 256
        self.workspace_bytes = total
        pre_rows = 256 // (p.head_dim // 8)
        self.pre_grid = (seq_q_pad // pre_rows, bh, 1)
        self.main_grid = (-(-p.seq_k // cfg.block_n), p.heads_kv, p.batch)
        self.block = (cfg.threads, 1, 1)
        self.n_vec8 = np.uint64(bh * p.seq_q * p.head_dim // 8)
        self.conv_grid = (max(1, min(-(-int(self.n_vec8) // 256), 8192)), 1, 1)
        i32, f32 = np.int32, np.float32
        self.pre_tail = (i32(p.seq_q), i32(seq_q_pad), f32(LOG2E))
        self.main_tail = (i32(p.heads_q), i32(p.heads_kv), i32(p.seq_q), i32(p.seq_k), i32(seq_q_pad),
                          f32(scale), f32(scale * LOG2E), i32(p.causal_offset if p.causal else 0))
        self.scale = f32(scale)
        self.deterministic = cfg.deterministic

    def __call__(self, q: int, k: int, v: int, out: int, lse: int, dout: int, dq: int, dk: int, dv: int,
                 workspace: int, stream) -> None:
        """Pointers of contiguous arrays; workspace: workspace_bytes, 256-byte aligned."""
        u64 = np.uint64
        lse2, delta, acc, sem = (u64(workspace + o) for o in self.offsets)
        sem = sem if self.deterministic else u64(0)
        self.pre(self.pre_grid, (256, 1, 1), (u64(out), u64(dout), u64(lse), lse2, delta, acc, sem) + self.pre_tail,
                 stream=stream)
        self.main(self.main_grid, self.block, (u64(q), u64(k), u64(v), u64(dout), lse2, delta, acc, u64(dk), u64(dv),
                                               sem) + self.main_tail, shared_mem=self.smem, stream=stream)
        self.conv(self.conv_grid, (256, 1, 1), (acc, u64(dq), self.n_vec8, self.scale), stream=stream)


def launch_plan(kernel, p: BackwardProblem, scale: float) -> BackwardLaunch:
    """The cached launch of problem p on a loaded kernel (one per shape and scale)."""
    return kernel.cached_plan((astuple(p), scale), lambda: BackwardLaunch(kernel, p, scale))


def reference_gradients(q, k, v, dout, *, causal: bool, scale: float, causal_offset: int = 0, chunk: int = 512):
    """The gradients of float64 attention (GQA; causal: query i sees keys 0..i + causal_offset)
    at q, k, v for upstream dout, in closed form: P = softmax(S), dV = P^T dO, dS = P (dO V^T -
    rowsum(dO * O)), dQ = scale dS K, dK = scale dS^T Q, dK and dV summed over each K/V head's
    query heads. A row that sees no key has O = 0, LSE = -inf, P = 0: it contributes nothing and
    its dQ is 0. NumPy or CuPy, query rows in chunks (no Nq x Nk matrix at once).
    Returns (out, lse, dq, dk, dv)."""
    xp = _xp(q)
    q, k, v, dout = (xp.asarray(a, dtype=xp.float64) for a in (q, k, v, dout))
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    group = hq // hkv
    k, v = xp.repeat(k, group, axis=1), xp.repeat(v, group, axis=1)
    out, dq = xp.empty_like(q), xp.empty_like(q)
    lse = xp.empty((b, hq, nq))
    dk, dv = xp.zeros_like(k), xp.zeros_like(v)
    for start in range(0, nq, chunk):
        rows = slice(start, min(nq, start + chunk))
        s = xp.einsum("bhqd,bhkd->bhqk", q[:, :, rows], k) * scale
        if causal:
            s = xp.where(xp.arange(nk)[None, :] > xp.arange(start, rows.stop)[:, None] + causal_offset, -xp.inf, s)
        m = s.max(axis=-1, keepdims=True)
        empty = xp.isneginf(m)  # rows that see no key
        p = xp.exp(s - xp.where(empty, 0.0, m))
        l = p.sum(axis=-1, keepdims=True)
        p /= xp.where(empty, 1.0, l)
        o = xp.einsum("bhqk,bhkd->bhqd", p, v)
        out[:, :, rows] = o
        lse[:, :, rows] = xp.where(empty, -xp.inf, m + xp.log(xp.where(empty, 1.0, l)))[..., 0]
        dp = xp.einsum("bhqd,bhkd->bhqk", dout[:, :, rows], v)
        ds = p * (dp - (dout[:, :, rows] * o).sum(axis=-1, keepdims=True))
        dq[:, :, rows] = scale * xp.einsum("bhqk,bhkd->bhqd", ds, k)
        dk += scale * xp.einsum("bhqk,bhqd->bhkd", ds, q[:, :, rows])
        dv += xp.einsum("bhqk,bhqd->bhkd", p, dout[:, :, rows])
    dk = dk.reshape(b, hkv, group, nk, d).sum(axis=2)
    dv = dv.reshape(b, hkv, group, nk, d).sum(axis=2)
    return out, lse, dq, dk, dv


def _xp(a):
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def compare_gradients(grads, refs, dtype: str) -> Check:
    """The worst of the three gradients' relative Frobenius errors; any non-finite value fails.
    grads and refs are (dq, dk, dv). A gradient that is exactly zero in exact arithmetic (every
    query row sees one key: dq = dk = 0) has no relative error: its error is measured against
    ZERO_FLOOR x |dv| instead (dv is never zero for a nonzero dO), so rounding noise of 1e-7
    passes and a wrong kernel does not."""
    xp = _xp(refs[0])
    floor = ZERO_FLOOR * float(xp.linalg.norm(refs[2]))
    worst, finite = 0.0, True
    for g, r in zip(grads, refs):
        g = xp.asarray(g, dtype=xp.float64)
        finite = finite and bool(xp.isfinite(g).all())
        worst = max(worst, float(xp.linalg.norm(g - r)) / max(float(xp.linalg.norm(r)), floor, 1e-30))
    return GradientCheck(dtype, worst if finite else float("inf"), 0.0, None, finite)


class GradientCheck(Check):
    """ops.reference.Check with the backward's tolerance (ops.backward_kernels.TOLERANCE); rel_error is
    the worst gradient's, there is no per-row or LSE part."""

    @property
    def tolerance(self) -> float:
        return TOLERANCE[self.dtype]


def make_inputs(p: BackwardProblem, dtype: str, seed: int, with_reference: bool = False):
    """One input set: random q, k, v, dO; O and LSE from the float64 forward (O rounded to the
    dtype, as a forward kernel would give it); outputs dq, dk, dv poisoned with NaN; the
    workspace. With with_reference, the float64 gradients come last."""
    import cupy

    rng = cupy.random.default_rng(seed)
    q_shape, kv_shape = (p.batch, p.heads_q, p.seq_q, p.head_dim), (p.batch, p.heads_kv, p.seq_k, p.head_dim)
    q, k, v, dout = (random_normal(rng, s, dtype) for s in (q_shape, kv_shape, kv_shape, q_shape))
    scale = default_scale(p.head_dim)
    ref = reference_gradients(*(to_float64(x, dtype) for x in (q, k, v, dout)), causal=p.causal, scale=scale,
                              causal_offset=p.causal_offset)
    out, lse = to_storage(ref[0].astype(cupy.float32), dtype), ref[1].astype(cupy.float32)
    dq, dk, dv = poisoned(q_shape, dtype), poisoned(kv_shape, dtype), poisoned(kv_shape, dtype)
    inputs = [q, k, v, out, lse, dout, dq, dk, dv, None]
    return (inputs, ref[2:]) if with_reference else inputs


def launcher(kernel, p: BackwardProblem, inputs, scale: float | None = None):
    """One whole backward call (three launches) on CuPy's current stream; the workspace is
    allocated here, once, and kept in inputs[-1]."""
    import cupy

    plan = launch_plan(kernel, p, default_scale(p.head_dim) if scale is None else scale)
    if inputs[-1] is None or inputs[-1].nbytes < plan.workspace_bytes:
        inputs[-1] = cupy.empty(max(plan.workspace_bytes, 256), dtype=cupy.uint8)
    ptrs = [x.data.ptr for x in inputs]
    stream = cupy.cuda.get_current_stream()

    def run() -> None:
        plan(*ptrs, stream)

    return run


def verify(kernel, p: BackwardProblem, seed: int) -> Check:
    """Launch once on fresh inputs into NaN-poisoned gradients; compare with the float64 gradients."""
    import cupy

    dtype = kernel.config.dtype
    inputs, refs = make_inputs(p, dtype, seed, with_reference=True)
    launcher(kernel, p, inputs)()
    cupy.cuda.get_current_stream().synchronize()
    return compare_gradients([to_float64(g, dtype) for g in inputs[6:9]], refs, dtype)
