"""Run a kernel on fresh random inputs with poisoned outputs and check it against
the float64 reference (reference.py). Used by the tests, the tuner and `autoflash verify`."""
from __future__ import annotations

from autoflash.launch import LoadedKernel, Problem, default_scale
from autoflash.reference import Check, compare, reference_attention

# (batch, heads_q, heads_kv, seq_q, seq_k) every template is checked on: odd lengths
# (1, 17, 1000, 4097), Nq != Nk both ways, GQA and MQA.
CHECK_SHAPES = [
    (1, 2, 2, 1, 1),
    (2, 2, 1, 17, 17),
    (1, 4, 2, 1000, 1000),
    (1, 2, 2, 17, 1000),
    (1, 3, 1, 1000, 17),
    (1, 1, 1, 4097, 4097),
    (1, 2, 1, 4097, 1000),
]

_NAN_BITS = {"fp16": 0x7E00, "bf16": 0x7FC0}  # quiet NaN bit patterns: poison for outputs


def to_storage(x32, dtype: str):
    """float32 CuPy array -> the kernel's element type (bf16 held as uint16 bits, rounded to nearest even)."""
    import cupy

    if dtype == "fp32":
        return x32.astype(cupy.float32)
    if dtype == "fp16":
        return x32.astype(cupy.float16)
    bits = x32.astype(cupy.float32).view(cupy.uint32)
    rounded = bits + cupy.uint32(0x7FFF) + ((bits >> 16) & cupy.uint32(1))
    return (rounded >> 16).astype(cupy.uint16)


def to_float64(x, dtype: str):
    import cupy

    if dtype == "bf16":
        return (x.astype(cupy.uint32) << 16).view(cupy.float32).astype(cupy.float64)
    return x.astype(cupy.float64)


def poisoned(shape, dtype: str):
    import cupy

    if dtype == "fp32":
        return cupy.full(shape, cupy.nan, dtype=cupy.float32)
    if dtype == "fp16":
        return cupy.full(shape, _NAN_BITS["fp16"], dtype=cupy.uint16).view(cupy.float16)
    return cupy.full(shape, _NAN_BITS["bf16"], dtype=cupy.uint16)


def random_inputs(p: Problem, dtype: str, seed: int):
    """Standard-normal q, k, v (never zeros), in the kernel's element type."""
    import cupy

    rng = cupy.random.default_rng(seed)
    q = to_storage(rng.standard_normal((p.batch, p.heads_q, p.seq_q, p.head_dim), dtype=cupy.float32), dtype)
    k = to_storage(rng.standard_normal((p.batch, p.heads_kv, p.seq_k, p.head_dim), dtype=cupy.float32), dtype)
    v = to_storage(rng.standard_normal((p.batch, p.heads_kv, p.seq_k, p.head_dim), dtype=cupy.float32), dtype)
    return q, k, v


def run_checked(kernel: LoadedKernel, p: Problem, seed: int = 0, scale: float | None = None,
                with_lse: bool = True) -> Check:
    """Launch once on fresh inputs into NaN-poisoned outputs; compare with the reference."""
    import cupy

    dtype = kernel.config.dtype
    scale = default_scale(p.head_dim) if scale is None else scale
    q, k, v = random_inputs(p, dtype, seed)
    out = poisoned(q.shape, dtype)
    lse = cupy.full(q.shape[:3], cupy.nan, dtype=cupy.float32) if with_lse else None
    kernel.launch(q.data.ptr, k.data.ptr, v.data.ptr, out.data.ptr, lse.data.ptr if with_lse else 0, p, scale)
    cupy.cuda.get_current_stream().synchronize()
    ref, ref_lse = reference_attention(to_float64(q, dtype), to_float64(k, dtype), to_float64(v, dtype),
                                       causal=p.causal, scale=scale)
    return compare(to_float64(out, dtype), ref, dtype, lse, ref_lse if with_lse else None)
