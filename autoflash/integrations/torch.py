"""autoflash.torch: a drop-in for torch.nn.functional.scaled_dot_product_attention.

    import autoflash.torch
    out = autoflash.torch.scaled_dot_product_attention(q, k, v, is_causal=True)

Same signature, layout and semantics as PyTorch's SDPA for what it supports:

- query (..., Hq, L, E), key (..., H, S, E), value (..., H, S, E): any number of
  leading dims (flattened to a batch; they must match, not broadcast); heads at dim
  -3 (3-D inputs are (heads, seq, dim), 2-D ones (seq, dim)). Output (..., Hq, L, E).
- is_causal: top-left aligned, as torch (query i sees keys 0..i, also when L != S).
- scale: None means 1/sqrt(E).
- enable_gqa=True lets Hq be a multiple of H (grouped-query / multi-query attention);
  without it the head counts must match, as in torch.
- float32, float16 and bfloat16 CUDA tensors; head dims autoflash has kernels for.

Not supported, each with an error that names the alternative: attn_mask (use
is_causal=True for a causal mask, torch's SDPA for other masks), dropout_p > 0
(torch's SDPA), inputs that require grad (no backward pass yet: use torch's SDPA
for training, or call under torch.no_grad() / torch.inference_mode()), a value head
dim different from the query's.

Layouts: the kernels take contiguous (B, H, N, D) tensors. Non-contiguous inputs
(for example q.transpose(1, 2) of a (B, N, H, D) projection) are accepted, as torch's
SDPA accepts them, but are copied with .contiguous() first: that costs one copy of
the input.

The kernel runs as the custom op ``torch.ops.autoflash.sdpa`` (torch.library) with a
fake (meta) implementation, so it traces under torch.compile (fullgraph too), runs
on the current CUDA stream, and can be captured in a CUDA graph: it allocates only
through torch's allocator and never synchronises the host. The first call for a
(dtype, head_dim, causal) compiles and loads its kernel (cached on disk and in the
process). Warm up before capturing (as torch's own CUDA-graph docs advise): capture
and replay after a warm-up are tested on the H100. A first call that happens inside
a capture loads the kernel with the thread's capture mode set to relaxed; that path
has a test (tests/test_torch_sdpa.py::test_first_call_inside_a_graph_capture) that
has not yet passed on a GPU.

This module imports PyTorch; `import autoflash` does not import it.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math

import torch

from autoflash.serve.api import attention

__all__ = ["scaled_dot_product_attention", "UnsupportedError"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_ALIGN = 16  # bytes: the kernels read 16-byte vectors


class UnsupportedError(NotImplementedError):
    """An SDPA argument autoflash does not support; the message names the alternative."""


# --------------------------------------------------------------- the op
@torch.library.custom_op("autoflash::sdpa", mutates_args=(), device_types="cuda")
def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, is_causal: bool,
          scale: float) -> torch.Tensor:
    """(B, Hq, L, E), (B, H, S, E) x2 -> (B, Hq, L, E) on torch's current CUDA stream."""
    q, k, v = (_kernel_ready(t) for t in (query, key, value))
    with _relaxed_capture_if_capturing(q.device):
        return attention(q, k, v, causal=is_causal, scale=scale)


@_sdpa.register_fake
def _sdpa_fake(query, key, value, is_causal, scale):
    return query.new_empty(query.shape)  # contiguous, dtype and device of query, as the real op


def _kernel_ready(t: torch.Tensor) -> torch.Tensor:
    """Contiguous and 16-byte aligned (a view at an odd offset is copied)."""
    t = t.contiguous()
    if t.data_ptr() % _ALIGN:
        t = t.clone()
    return t


_CU_STREAM_CAPTURE_MODE_RELAXED = 2  # cuda.h: CUstreamCaptureMode


@functools.cache
def _exchange_capture_mode():
    fn = ctypes.CDLL("libcuda.so.1").cuThreadExchangeStreamCaptureMode
    fn.argtypes = [ctypes.POINTER(ctypes.c_int)]
    fn.restype = ctypes.c_int
    return fn


@contextlib.contextmanager
def _relaxed_capture_if_capturing(device):
    """During a graph capture, let this thread make the calls a first launch needs
    (loading the kernel's module, setting its shared-memory attribute), which the
    default global capture mode forbids. The launch itself goes on the capture stream."""
    if not torch.cuda.is_current_stream_capturing():
        yield
        return
    mode = ctypes.c_int(_CU_STREAM_CAPTURE_MODE_RELAXED)
    fn = _exchange_capture_mode()
    if fn(ctypes.byref(mode)) != 0:
        raise RuntimeError("cuThreadExchangeStreamCaptureMode failed")
    try:
        yield
    finally:
        fn(ctypes.byref(mode))  # restore the caller's mode


# ------------------------------------------------------------ the drop-in
def _check(query, key, value, attn_mask, dropout_p, enable_gqa) -> tuple[int, int]:
    """Everything that can be refused before touching the GPU; returns (Hq, H)."""
    if attn_mask is not None:
        raise UnsupportedError(
            "autoflash's scaled_dot_product_attention takes no attn_mask: for a causal mask pass "
            "is_causal=True (top-left aligned, as torch); for other masks use "
            "torch.nn.functional.scaled_dot_product_attention")
    if dropout_p != 0.0:
        raise UnsupportedError(
            f"autoflash's scaled_dot_product_attention has no dropout (dropout_p={dropout_p}); pass dropout_p=0.0 "
            "(inference), or use torch.nn.functional.scaled_dot_product_attention for training with dropout")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad):
        raise UnsupportedError(
            "autoflash's scaled_dot_product_attention has no backward pass yet, and an input requires grad: "
            "call it under torch.no_grad() or torch.inference_mode(), or use "
            "torch.nn.functional.scaled_dot_product_attention for training")
    if not (query.dim() == key.dim() == value.dim()) or query.dim() < 2:
        raise ValueError(f"query, key and value must have the same number of dimensions (at least 2: (..., L, E)), "
                         f"got shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    if not (query.dtype == key.dtype == value.dtype):
        raise ValueError(f"query, key and value must share one dtype, got {query.dtype}, {key.dtype}, {value.dtype}")
    if query.dtype not in _DTYPES:
        raise ValueError(f"dtype {query.dtype} is not supported; autoflash runs float32, float16 and bfloat16")
    e = query.shape[-1]
    if key.shape[-1] != e:
        raise ValueError(f"key's embedding dim ({key.shape[-1]}) differs from query's ({e})")
    if value.shape[-1] != e:
        raise UnsupportedError(f"value's head dim ({value.shape[-1]}) differs from query's ({e}); autoflash's kernels "
                               "need them equal: use torch.nn.functional.scaled_dot_product_attention")
    if key.shape != value.shape:
        raise ValueError(f"key and value must have the same shape, got {tuple(key.shape)} and {tuple(value.shape)}")
    if query.shape[:-3] != key.shape[:-3]:
        raise ValueError(f"leading (batch) dims of query {tuple(query.shape[:-3])} and key/value "
                         f"{tuple(key.shape[:-3])} differ; autoflash does not broadcast them: expand and "
                         "make them contiguous first")
    hq = query.shape[-3] if query.dim() >= 3 else 1
    hkv = key.shape[-3] if key.dim() >= 3 else 1
    if hq != hkv:
        if not enable_gqa:
            raise ValueError(f"query has {hq} heads and key/value {hkv} (dim -3); pass enable_gqa=True for "
                             "grouped-query attention")
        if hkv == 0 or hq % hkv:
            raise ValueError(f"query heads ({hq}) must be a multiple of key/value heads ({hkv}) for enable_gqa")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.device.type != "cuda":
            raise ValueError(f"{name} is on {t.device}; autoflash runs on CUDA tensors (use {name}.cuda(), or "
                             f"torch.nn.functional.scaled_dot_product_attention on the CPU)")
    if not (query.device == key.device == value.device):
        raise ValueError(f"query, key and value must be on one device, got {query.device}, {key.device}, {value.device}")
    return hq, hkv


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    """torch.nn.functional.scaled_dot_product_attention on autoflash's kernels (forward only).

    See the module docstring for what is supported; unsupported arguments raise
    UnsupportedError (a NotImplementedError) naming the alternative.
    """
    hq, hkv = _check(query, key, value, attn_mask, dropout_p, enable_gqa)
    e = query.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(e)
    elif not math.isfinite(float(scale)):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    lead = query.shape[:-3]
    batch = math.prod(lead)
    seq_q, seq_k = query.shape[-2], key.shape[-2]
    if batch == 0 or hq == 0 or seq_q == 0:
        return query.new_empty(query.shape)  # nothing to compute, as torch
    q4 = query.reshape(batch, hq, seq_q, e).contiguous()
    k4 = key.reshape(batch, hkv, seq_k, e).contiguous()
    v4 = value.reshape(batch, hkv, seq_k, e).contiguous()
    out = torch.ops.autoflash.sdpa(q4, k4, v4, bool(is_causal), float(scale))
    return out.reshape(query.shape)
