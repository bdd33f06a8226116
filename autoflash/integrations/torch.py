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
- Kernels: what autoflash.attention() picks (serve/routing.py): the split-KV decode kernel
  for decode shapes (fp16/bf16, L <= 16, not causal or L == S), else the forward kernel.
- Gradients: inputs that require grad (with grad mode on) get them through autoflash's
  backward for float16/bfloat16 and E 64, 128 or 256 (sm_80+); other dtypes and head dims raise
  UnsupportedError naming what is supported. The backward is registered with
  torch.library.register_autograd, so it also runs under torch.compile(fullgraph=True).
  There is no `deterministic` switch here (SDPA has none); autoflash.attention() has one.

Not supported, each with an error that names the alternative: attn_mask (use
is_causal=True for a causal mask, torch's SDPA for other masks), dropout_p > 0
(torch's SDPA), a value head dim different from the query's. SDPA's signature has no
sliding window, softcap, sinks or ALiBi (FlexAttention's score_mod/block_mask express them):
autoflash.attention(..., window_size=, softcap=, sinks=, alibi_slopes=) runs them, and
autoflash.attention_varlen packed variable-length batches (flash-attn's names; no gradients yet).

Layouts: the kernels take (B, H, N, D) tensors with any strides whose last dim is
contiguous and whose other strides are multiples of 16 bytes, so views such as
q.transpose(1, 2) of a (B, N, H, D) projection are read in place, without a copy.
Other layouts are accepted, as torch's SDPA accepts them, but copied with .contiguous()
first. Inputs that need gradients are read in place too where the backward can (ops/backward_wgmma.STRIDED, on by
default: flash_bwd_wgmma takes strides; other keys' backward reads contiguous copies). The output is a new
(..., Hq, L, E) tensor laid out in query's dimension order, as PyTorch's SDPA lays it out (a transposed view for a
transposed query; contiguous for a contiguous one, and always with ops/backward_wgmma.STRIDED off).

The kernels run as custom ops (torch.library) with fake (meta) implementations:
``torch.ops.autoflash.sdpa`` (inference: output only), ``autoflash::sdpa_fwd`` (output and
LSE, with the autograd formula) and ``autoflash::sdpa_bwd`` (dq, dk, dv). They trace under
torch.compile (fullgraph too), run on the current CUDA stream, and can be captured in a
CUDA graph: they allocate only through torch's allocator and never synchronise the host
(decode's split count is a function of the shapes). The first call for a kernel compiles
and loads it (cached on disk and in the process). Warm up before capturing (as torch's own
CUDA-graph docs advise). A first call that happens inside a capture loads the kernel with
the thread's capture mode set to relaxed; that path has a test
(tests/test_torch_sdpa.py::test_first_call_inside_a_graph_capture).

Call plans (serve/call_plans.py, serve/training_plans.py): a plain eager call (no torch.compile
tracing, no dispatch or function mode, no functorch transform) checked once is served next time
without the checks and the dispatcher; a training call then runs autoflash's own autograd Function
(the same forward and backward kernels as the ops' autograd formula; its grad_fn is
PlannedAttentionBackward). Under torch.compile every call goes through the ops.

This module imports PyTorch; `import autoflash` does not import it.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math

import torch

from autoflash.ops import backward_wgmma
from autoflash.ops.forward_base import dense_strides
from autoflash.serve import call_plans, out_layout, training_plans
from autoflash.serve.api import MAX_TOKEN_STRIDE, attention_forward, forward_tagged
from autoflash.serve.autograd import aligned_contiguous, attention_backward, backward_inputs, kernel_ready
from autoflash.serve.routing import BACKWARD_HEAD_DIMS, differentiable_problem

__all__ = ["scaled_dot_product_attention", "UnsupportedError"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_ALIGN = 16  # bytes: the kernels read 16-byte vectors


class UnsupportedError(NotImplementedError):
    """An SDPA argument autoflash does not support; the message names the alternative."""


# --------------------------------------------------------------- the ops
@torch.library.custom_op("autoflash::sdpa", mutates_args=(), device_types="cuda")
def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, is_causal: bool,
          scale: float) -> torch.Tensor:
    """(B, Hq, L, E), (B, H, S, E) x2 -> (B, Hq, L, E) on torch's current CUDA stream (no grad).
    Inputs are read in place when their strides allow it; the output is contiguous (with
    ops/backward_wgmma.STRIDED: in query's dimension order, _out_order)."""
    return _sdpa_impl(query, key, value, is_causal, scale)


def _sdpa_impl(query, key, value, is_causal: bool, scale: float, tag=None) -> torch.Tensor:
    """The inference op's body; tag: the drop-in's call-plan tag when called directly (eager)."""
    q, k, v = (t if _readable_in_place(t) else aligned_contiguous(t) for t in (query, key, value))
    with _relaxed_capture_if_capturing(q.device):
        if tag is None:
            out = attention_forward(q, k, v, causal=is_causal, scale=scale)
        else:
            out = forward_tagged(tag, q, k, v, causal=is_causal, scale=scale)
    return _in_promised_layout(query, out)


@_sdpa.register_fake
def _sdpa_fake(query, key, value, is_causal, scale):
    return _promised_empty(query)  # contiguous whatever query's strides (STRIDED: query's order), as the real op


@torch.library.custom_op("autoflash::sdpa_fwd", mutates_args=(), device_types="cuda")
def _sdpa_fwd(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, is_causal: bool,
              scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward that keeps what the backward needs: out (B, Hq, L, E) and the natural-log
    LSE (B, Hq, L), float32."""
    q, k, v = (kernel_ready(t) for t in (query, key, value))
    with _relaxed_capture_if_capturing(q.device):
        out, lse = attention_forward(q, k, v, causal=is_causal, scale=scale, return_lse=True)
    return _in_promised_layout(query, out), lse


@_sdpa_fwd.register_fake
def _sdpa_fwd_fake(query, key, value, is_causal, scale):
    return _promised_empty(query), query.new_empty(query.shape[:3], dtype=torch.float32)


def _out_order(query) -> tuple | None:
    """The order of O's dims in memory the ops promise (their fakes' layout): None (contiguous), or under
    ops/backward_wgmma.STRIDED query's (serve/out_layout.py, as attention() allocates it for a q read in place)."""
    return out_layout.order(tuple(query.shape), tuple(query.stride()), query.shape[-1], query.element_size())


def _promised_empty(query) -> torch.Tensor:
    """A new tensor shaped, typed and laid out as the ops' output for query (dtype and device of query)."""
    order = _out_order(query)
    return query.new_empty(query.shape) if order is None else out_layout.empty_torch(query, query.shape, order)


def _in_promised_layout(query, out: torch.Tensor) -> torch.Tensor:
    """out in the fakes' layout: itself but where attention() could not write it so (under STRIDED, a query
    copied before the launch, or served by the decode kernel, whose O is contiguous): then a copy."""
    if not backward_wgmma.STRIDED:
        return out
    order = _out_order(query)
    if tuple(out.stride()) == dense_strides(tuple(out.shape), order):
        return out
    return _promised_empty(query).copy_(out)  # (the drop-in's O has query's shape)


@torch.library.custom_op("autoflash::sdpa_bwd", mutates_args=(), device_types="cuda")
def _sdpa_bwd(grad_out: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              out: torch.Tensor, lse: torch.Tensor, is_causal: bool,
              scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dq, dk, dv (new contiguous tensors; with ops/backward_wgmma.STRIDED laid out as torch.empty_like(query, key,
    value), the fake's layout) from the forward's inputs, out and LSE."""
    g, q, k, v, o = (kernel_ready(t) for t in (grad_out, query, key, value, out))
    with _relaxed_capture_if_capturing(q.device):
        grads = attention_backward(q, k, v, o, aligned_contiguous(lse), g, causal=is_causal, scale=scale)
    if not backward_wgmma.STRIDED:
        return grads
    # an input copied above got contiguous gradients: into the fake's layout
    inputs, read = (query, key, value), (q, k, v)
    return tuple(d if t is c else torch.empty_like(t).copy_(d) for d, t, c in zip(grads, inputs, read))


@_sdpa_bwd.register_fake
def _sdpa_bwd_fake(grad_out, query, key, value, out, lse, is_causal, scale):
    if backward_wgmma.STRIDED:  # the real op's layout (empty_like gives SymInt strides too)
        return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)
    return query.new_empty(query.shape), key.new_empty(key.shape), value.new_empty(value.shape)


def _sdpa_setup_context(ctx, inputs, output):
    query, key, value, is_causal, scale = inputs
    out, lse = output
    ctx.save_for_backward(query, key, value, out, lse)  # O and LSE, never P
    ctx.is_causal, ctx.scale = is_causal, scale


def _sdpa_backward(ctx, grad_out, grad_lse):
    # grad_lse is dropped: the drop-in never hands the LSE out, so nothing depends on it.
    query, key, value, out, lse = ctx.saved_tensors
    dq, dk, dv = torch.ops.autoflash.sdpa_bwd(grad_out, query, key, value, out, lse, ctx.is_causal, ctx.scale)
    return dq, dk, dv, None, None


torch.library.register_autograd("autoflash::sdpa_fwd", _sdpa_backward, setup_context=_sdpa_setup_context)


def _readable_in_place(t: torch.Tensor) -> bool:
    """The kernels can read t as it is: last dim contiguous, every other stride (of a dim
    longer than 1) a multiple of 16 bytes, 16-byte aligned data (serve/api.kernel_strides)."""
    eb = t.element_size()
    if t.data_ptr() % _ALIGN or (t.shape[-1] > 1 and t.stride(-1) != 1):
        return False
    if t.shape[-2] > 1 and t.stride(-2) >= MAX_TOKEN_STRIDE:
        return False
    return all(s >= 0 and (s * eb) % _ALIGN == 0 for s, n in zip(t.stride()[:-1], t.shape[:-1]) if n > 1)


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


def _needs_grad(query, key, value) -> bool:
    return torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad)


def _check_differentiable(query) -> None:
    """The backward's dtypes and head dims (the arch is checked when the backward runs)."""
    if query.dtype in (torch.float16, torch.bfloat16) and query.shape[-1] in BACKWARD_HEAD_DIMS:
        return
    why = differentiable_problem(kind="torch", dtype=_DTYPE_NAMES.get(query.dtype, str(query.dtype)), arch=None,
                                 head_dim=query.shape[-1], api="autoflash's scaled_dot_product_attention")
    raise UnsupportedError(why)


_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> torch.Tensor:
    """torch.nn.functional.scaled_dot_product_attention on autoflash's kernels.

    See the module docstring for what is supported; unsupported arguments raise
    UnsupportedError (a NotImplementedError) naming the alternative.
    """
    direct = attn_mask is None and type(dropout_p) in _NUMBERS and dropout_p == 0 and _eager_plain(query, key, value)
    plannable = direct and query.dim() == 4 and type(scale) in _PLAN_SCALES
    if plannable:  # a call checked before: its plan (inference: serve/call_plans.py, training: training_plans.py)
        plan_key = _plan_key(query, key, value, is_causal, scale, enable_gqa)
        out = call_plans.run(plan_key, query, key, value)
        if out is None:
            out = training_plans.run(plan_key, False, query, key, value)
        if out is not None:
            return out
    hq, hkv = _check(query, key, value, attn_mask, dropout_p, enable_gqa)
    e = query.shape[-1]
    if scale is None:
        scale = 1.0 / math.sqrt(e)
    elif not math.isfinite(float(scale)):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    grad = _needs_grad(query, key, value)
    if grad:
        _check_differentiable(query)
    lead = query.shape[:-3]
    batch = math.prod(lead)
    seq_q, seq_k = query.shape[-2], key.shape[-2]
    if batch == 0 or hq == 0 or seq_q == 0:  # nothing to compute, as torch
        if grad:  # an empty output that still carries (zero) gradients to every input
            return torch.zeros_like(query) + (query.sum() + key.sum() + value.sum()) * 0
        return query.new_empty(query.shape)
    # reshape is a view whenever the leading dims allow one (always for 4-D inputs): strided
    # views reach the inference op as they are; the backward takes contiguous tensors.
    q4 = query.reshape(batch, hq, seq_q, e)
    k4 = key.reshape(batch, hkv, seq_k, e)
    v4 = value.reshape(batch, hkv, seq_k, e)
    if grad:
        (q4, k4, v4), contiguous = backward_inputs(q4, k4, v4)
        out, _ = torch.ops.autoflash.sdpa_fwd(q4, k4, v4, bool(is_causal), float(scale))
        if plannable and contiguous:  # next time (eager): autoflash's planned Function, as the op's autograd does
            forward_key = call_plans.call_key(q4, k4, v4, bool(is_causal), "top_left", float(scale), True, None, None)
            training_plans.remember(_plan_key(query, key, value, is_causal, scale, enable_gqa), forward_key, False,
                                    bool(is_causal), "top_left", float(scale))
    elif direct:  # what the op would run, without the dispatcher's cost; the plan kept under the drop-in's tag
        out = _sdpa_impl(q4, k4, v4, bool(is_causal), float(scale), _GQA_TAG if enable_gqa else _TAG)
    else:
        out = torch.ops.autoflash.sdpa(q4, k4, v4, bool(is_causal), float(scale))
    return out.reshape(query.shape)


def _plan_key(query, key, value, is_causal, scale, enable_gqa) -> tuple | None:
    """The drop-in's call-plan key of a 4-D call (scale None, a float or an int)."""
    s = 1.0 / math.sqrt(query.shape[-1]) if scale is None else float(scale)
    return call_plans.call_key(query, key, value, bool(is_causal), "top_left", s, False, None,
                               _GQA_TAG if enable_gqa else _TAG)


# Call-plan tags: plans made by the drop-in passed its checks (enable_gqa's among them).
_TAG, _GQA_TAG = ("sdpa", False), ("sdpa", True)
_NUMBERS = (float, int)
_PLAN_SCALES = (type(None), float, int)


def _eager_check():
    """A function telling whether query, key and value are plain tensors in plain eager mode (no
    torch.compile tracing, no dispatch or function mode, no functorch transform): then calling the
    inference op's body directly does what the op would do. Where this torch lacks one of the
    probes, always False (every call goes through the op). compiling() comes first: under
    torch.compile it is the constant True and nothing after it is traced."""
    C = torch._C
    try:
        dispatch_modes, function_mode = C._len_torch_dispatch_stack, C._is_torch_function_mode_enabled
        transforms, compiling = C._functorch.peek_interpreter_stack, torch.compiler.is_compiling
    except AttributeError:
        return lambda query, key, value: False
    plain = torch.Tensor

    def eager_plain(query, key, value) -> bool:
        return (not compiling() and type(query) is plain and type(key) is plain and type(value) is plain
                and not dispatch_modes() and not function_mode() and transforms() is None)

    return eager_plain


_eager_plain = _eager_check()
