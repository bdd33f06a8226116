"""The backward's GPU side with CuPy (runner process, CuPy imported where used): the float64
reference gradients, checked launches, and the timing inputs of the op contract."""
from __future__ import annotations

from autoflash.kernels.arrays import poisoned, random_normal, to_float64, to_storage
from autoflash.ops.backward import TOLERANCE, BackwardProblem, default_scale, launch_plan
from autoflash.ops.reference import Check

ZERO_FLOOR = 1e-3  # see compare_gradients


def reference_gradients(q, k, v, dout, *, causal: bool, scale: float, chunk: int = 512):
    """The gradients of float64 attention (top-left causal, GQA) at q, k, v for upstream dout,
    in closed form: P = softmax(S), dV = P^T dO, dS = P (dO V^T - rowsum(dO * O)), dQ = scale
    dS K, dK = scale dS^T Q, dK and dV summed over each K/V head's query heads. NumPy or CuPy,
    query rows in chunks (no Nq x Nk matrix at once). Returns (out, lse, dq, dk, dv)."""
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
            s = xp.where(xp.arange(nk)[None, :] > xp.arange(start, rows.stop)[:, None], -xp.inf, s)
        m = s.max(axis=-1, keepdims=True)
        p = xp.exp(s - m)
        l = p.sum(axis=-1, keepdims=True)
        p /= l
        o = xp.einsum("bhqk,bhkd->bhqd", p, v)
        out[:, :, rows], lse[:, :, rows] = o, (m + xp.log(l))[..., 0]
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
    import numpy

    return numpy


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
    """ops.reference.Check with the backward's tolerance (ops.backward.TOLERANCE); rel_error is
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
    ref = reference_gradients(*(to_float64(x, dtype) for x in (q, k, v, dout)), causal=p.causal, scale=scale)
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
