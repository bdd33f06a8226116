"""The forward's output layout. Under ops/backward_wgmma.STRIDED (the default): O is allocated dense with q's
dimension order, as PyTorch's SDPA does (cuDNN: alloc_with_matching_layout, an argsort of q's strides; flash: its
kernel's output is (B, N, H, D) and handed back transposed). A q viewed from a (B, N, H, D) projection then gets an O of
that layout, whose `o.transpose(1, 2).reshape(b, n, h * d)` is a view instead of a copy, and the strided backward reads
it in place. A contiguous q still gets a contiguous O. Off (STRIDED False): O is always a new contiguous
(B, Hq, Nq, Dv) array. Every forward template takes O's (batch, head, token) strides at run time (flash_fwd_wgmma's TMA
store builds O's tensor map from them), so the kernels are unchanged.

An order is a permutation of (0, 1, 2, 3): O's dims outermost first, the head dim (3) always last; None means
contiguous. A plan (serve/call_plans.py) keeps the order it was checked with, so flipping STRIDED never makes a
plan allocate an O its launch was not planned for.
"""
from __future__ import annotations

from autoflash.ops import backward_wgmma
from autoflash.ops.forward_base import MAX_TOKEN_STRIDE, dense_strides, stepped_strides

LIKE_Q = True  # under STRIDED: False keeps O contiguous (benchmarks/strided_model_ab.py's phase-1-only runs)


def order(shape: tuple, strides: tuple, dim_v: int, element_bytes: int) -> tuple | None:
    """O's dimension order for q of this shape and these element strides (dim_v: O's head dim), or None
    (contiguous): STRIDED off, q's order already (batch, head, token), a broadcast (stride 0) dim, or rows
    the kernels could not address (O's strides 16-byte multiples, its token stride < MAX_TOKEN_STRIDE)."""
    if not (backward_wgmma.STRIDED and LIKE_Q) or len(shape) != 4 or (dim_v * element_bytes) % 16:
        return None
    steps = stepped_strides(shape, strides)  # size-1 dims must not reorder O
    if any(s == 0 for s, n in zip(steps, shape[:3]) if n > 1):
        return None
    dims = tuple(sorted(range(3), key=lambda d: -steps[d]))  # stable: ties keep (batch, head, token)
    if dims == (0, 1, 2):
        return None
    perm = (*dims, 3)
    if dense_strides((*shape[:3], dim_v), perm)[2] >= MAX_TOKEN_STRIDE:
        return None
    return perm


def inverse(perm: tuple) -> tuple:
    """The permutation that takes the dense (perm-ordered) allocation back to (B, Hq, Nq, Dv)."""
    return tuple(perm.index(d) for d in range(len(perm)))


def empty_torch(q, shape: tuple, perm: tuple | None, dtype=None):
    """A new tensor of `shape` on q's device laid out in perm order (SymInt shapes too: the drop-in's fakes)."""
    if perm is None:
        return q.new_empty(shape, dtype=dtype)
    return q.new_empty([shape[d] for d in perm], dtype=dtype).permute(inverse(perm))


def empty_cupy(cupy, shape: tuple, perm: tuple | None, dtype):
    """empty_torch for CuPy (on the current device)."""
    if perm is None:
        return cupy.empty(shape, dtype=dtype)
    return cupy.empty([shape[d] for d in perm], dtype=dtype).transpose(inverse(perm))
