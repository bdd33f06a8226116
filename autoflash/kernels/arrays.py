"""Device arrays in a kernel's element types (CuPy, imported where used): random
inputs, NaN-poisoned outputs, and the float64 view every reference check reads."""
from __future__ import annotations

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
    """An output array full of NaN: an element the kernel does not write fails the check."""
    import cupy

    if dtype == "fp32":
        return cupy.full(shape, cupy.nan, dtype=cupy.float32)
    if dtype == "fp16":
        return cupy.full(shape, _NAN_BITS["fp16"], dtype=cupy.uint16).view(cupy.float16)
    return cupy.full(shape, _NAN_BITS["bf16"], dtype=cupy.uint16)


def random_normal(rng, shape, dtype: str):
    """Standard-normal values (never all zeros) in the element type; rng: cupy.random.default_rng(seed)."""
    import cupy

    return to_storage(rng.standard_normal(shape, dtype=cupy.float32), dtype)
