"""autoflash.attention(): arrays in, pick the operation (serve/routing.py) and its config, compile
once, launch, arrays out; with PyTorch inputs that require grad, through the backward
(serve/autograd.py)."""
from __future__ import annotations

import functools
import logging

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.config import OpConfig
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel, stream_handle
from autoflash.ops.backward_kernels import HEAD_DIM_PAIRS
from autoflash.ops.decode_kernels import DecodeConfig
from autoflash.ops.forward import FORWARD
from autoflash.ops.forward_base import CAUSAL_ALIGNMENTS, KernelConfig, Problem, causal_offset, dense_strides
from autoflash.ops.forward_launch import plan
from autoflash.serve import call_plans, dispatch, frameworks, out_layout, training_plans
from autoflash.serve.autograd import backward_inputs, differentiable_attention, no_v_head_dim_gradients
from autoflash.serve.decode import launch_decode
from autoflash.serve.errors import InputError
from autoflash.serve.operands import (  # noqa: F401  (api's names too: varlen, kvcache, the drop-in)
    ELEMENT_BYTES, MAX_TOKEN_STRIDE, Operand, as_operand, check_scale, kernel_strides)
from autoflash.serve.routing import differentiable_problem, route_attention
from autoflash.serve.variants import VARIANTS_DOC, Variants, check_variants

log = logging.getLogger("autoflash")


def _cupy_dtype(dtype: str):
    import cupy

    if dtype == "bf16":
        try:
            import ml_dtypes  # CuPy's bfloat16 is ml_dtypes.bfloat16 (JAX installs it)
        except ModuleNotFoundError:
            raise InputError("bfloat16 CuPy arrays need the ml_dtypes package (pip install ml_dtypes)") from None
        return ml_dtypes.bfloat16
    return {"fp32": cupy.float32, "fp16": cupy.float16}[dtype]


def _result(ref: Operand, x):
    """A result in the caller's kind: foreign arrays get theirs back through DLPack (no copy)."""
    return x if ref.wrap is None or x is None else ref.wrap(x)


def check_inputs(q: Operand, k: Operand, v: Operand, *, head_dim_v_ok: bool = False) -> Problem:
    """The problem of q, k, v (any strides with a contiguous head dim, rows 16-byte aligned);
    its strides describe a new contiguous output. head_dim_v_ok: v's head dim may differ from
    q/k's (Problem.head_dim_v; attention()'s forward only)."""
    for t in (q, k, v):
        if len(t.shape) != 4:
            raise InputError(f"{t.name} must have 4 dimensions (batch, heads, seq, head_dim), got shape {t.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise InputError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.kind == k.kind == v.kind):
        raise InputError(f"q, k, v must be the same kind of array, got {q.kind}, {k.kind}, {v.kind}")
    if not (q.device == k.device == v.device):
        raise InputError(f"q, k, v must be on one GPU, got devices {q.device}, {k.device}, {v.device}")
    if k.shape[:3] != v.shape[:3]:
        raise InputError(f"k and v must have the same shape, got {k.shape} and {v.shape}")
    dv = v.shape[3]
    if dv != k.shape[3] and not head_dim_v_ok:
        raise InputError(f"v's head dim ({dv}) differs from k's ({k.shape[3]}): only attention()'s forward "
                         "serves that")
    b, hq, nq, d = q.shape
    bk, hkv, nk, dk = k.shape
    if bk != b:
        raise InputError(f"batch of q ({b}) and k/v ({bk}) differ")
    if dk != d:
        raise InputError(f"head_dim of q ({d}) and k/v ({dk}) differ")
    if min(b, hq, nq, d, hkv, nk, dv) == 0:
        raise InputError(f"empty input: q shape {q.shape}, k/v shape {k.shape}")
    if hq % hkv:
        raise InputError(f"query heads ({hq}) must be a multiple of key/value heads ({hkv}) for GQA/MQA")
    if max(nq, nk) >= 2**31:
        raise InputError(f"sequence length {max(nq, nk)} does not fit the kernel's 32-bit lengths")
    out = (hq * nq * dv, nq * dv, dv)  # the output is a new contiguous (B, Hq, Nq, Dv) tensor
    strides = (kernel_strides(q), kernel_strides(k), kernel_strides(v), out)
    return Problem(b, hq, hkv, nq, nk, d, causal=False, strides=strides, head_dim_v=dv if dv != d else 0)


def choose_config(arch: str, device_name: str, dtype: str, head_dim: int, causal: bool, seq_len: int,
                  flags: dict | None = None) -> KernelConfig:
    """The tuned config for this problem (flags: its variant flags, Variants.flags) if there is
    one, else the heuristic default (cached per problem by dispatch.explain)."""
    return dispatch.select(arch, device_name, FORWARD.name,
                           dict(dtype=dtype, head_dim=head_dim, causal=causal, **(flags or {})), seq_len)


@functools.cache
def _compiled(cfg: KernelConfig):
    return compile_kernel(cfg)


@functools.cache
def loaded_kernel(cfg: KernelConfig, device_id: int) -> LoadedKernel:
    """Compiled once per process, loaded once per device."""
    import cupy

    with cupy.cuda.Device(device_id):
        return LoadedKernel(_compiled(cfg))


def _empty_like(ref: Operand, shape: tuple, dtype: str):
    if ref.kind == "torch":
        return ref.obj.new_empty(shape, dtype=frameworks.torch_dtypes()[dtype])  # same device as ref
    cupy = frameworks.cupy()
    with cupy.cuda.Device(ref.device):
        return cupy.empty(shape, dtype=_cupy_dtype(dtype))


def _empty_in_order(ref: Operand, shape: tuple, order: tuple):
    """_empty_like in ref's dtype, its dims in memory in `order` (serve/out_layout.py)."""
    if ref.kind == "torch":
        return out_layout.empty_torch(ref.obj, shape, order, frameworks.torch_dtypes()[ref.dtype])  # ref's device
    cupy = frameworks.cupy()
    with cupy.cuda.Device(ref.device):
        return out_layout.empty_cupy(cupy, shape, order, _cupy_dtype(ref.dtype))


def _pointer(x) -> int:
    return x.data_ptr() if hasattr(x, "data_ptr") else x.data.ptr


def _stream(ref: Operand):
    """The stream the caller's framework is using now (results are ordered after prior
    work), as a CuPy stream; None means CuPy's current stream."""
    if ref.kind == "torch":
        ptr = frameworks.raw_stream()(ref.device)
        return stream_handle(ptr) if ptr else None  # 0: the legacy default stream, CuPy's default too
    return None


def attention(q, k, v, *, causal: bool = False, causal_alignment: str = "top_left", scale: float | None = None,
              return_lse: bool = False, config: KernelConfig | DecodeConfig | dict | None = None,
              deterministic: bool = False, window_size: tuple[int, int] = (-1, -1), softcap: float | None = None,
              sinks=None, alibi_slopes=None):
    """Flash attention: softmax(q k^T * scale) v without the N x N matrix.

    q: (batch, heads_q, seq_q, head_dim); k, v: (batch, heads_kv, seq_k, head_dim),
    heads_q a multiple of heads_kv (GQA/MQA). PyTorch CUDA tensors, CuPy arrays or DLPack
    producers (fp32, fp16, bf16) with any strides whose last dim is contiguous and whose
    other strides are multiples of 16 bytes (e.g. (B, N, H, D) tensors viewed as
    x.transpose(1, 2), as Hugging Face hands them): read in place, never copied (except
    for gradients, whose backward takes contiguous tensors). scale defaults to 1/sqrt(head_dim).
    v's head dim may differ from q/k's (e.g. 192/128, MLA prefill; 128/64): out is then
    (batch, heads_q, seq_q, head_dim_v); gradients for 192/128 and 128/64 (see below).

    causal_alignment (used when causal=True):
      "top_left" (default; torch's is_causal): query i attends to keys 0..i.
      "bottom_right" (flash-attn >= 2.1; KV caches, chunked prefill): the queries are the
        last seq_q positions, query i attends to keys 0..i + seq_k - seq_q.
    The two agree when seq_q == seq_k. A row that sees no key (top-left never has one;
    bottom-right when seq_q > seq_k, its first seq_q - seq_k rows) gets output 0 and LSE -inf.

    Attention variants (flash-attn's names and semantics; checked before any launch):
{variants}

    Returns the output, a new (batch, heads_q, seq_q, head_dim) array (same kind, dtype, device;
    on the caller's current stream; laid out in q's dimension order as PyTorch's SDPA does,
    serve/out_layout.py: contiguous for a contiguous q, and always with ops/backward_wgmma.STRIDED
    off) and, with return_lse, the per-row log-sum-exp (float32, batch x heads_q x seq_q, natural log).

    Served by the split-KV decode kernel when that is the right kernel (PyTorch fp16/bf16,
    seq_q <= 16, and no mask, bottom-right, or seq_q == seq_k: serve/routing.route_attention),
    else by the forward kernel. config pins a forward (KernelConfig) or decode (DecodeConfig) config.

    Differentiable for PyTorch tensors that require grad (with grad mode on): fp16/bf16,
    head_dim 64, 128 or 256 (or Dqk/Dv 192/128, 128/64), sm_80+, causal in either alignment; the forward saves O and the
    LSE (not P) and the backward recomputes P. deterministic=True makes dq bitwise repeatable (at a cost). Other
    configurations raise InputError naming what is supported, never a silently
    non-differentiable result.
    """
    plain = call_plans.plain(window_size, softcap, sinks, alibi_slopes)
    if plain:  # a call checked before, served by its plan (serve/call_plans.py, training: serve/training_plans.py)
        key = call_plans.call_key(q, k, v, causal, causal_alignment, scale, return_lse, config, None)
        out = call_plans.run(key, q, k, v)
        if out is None:
            out = training_plans.run(key, deterministic, q, k, v)
        if out is not None:
            return out
    check_alignment(causal_alignment)
    variant_args = dict(window_size=window_size, softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes)
    if type(q).__module__.startswith("torch") and _needs_grad(q, k, v, sinks):
        qo = as_operand(q, "q")
        problem = check_inputs(qo, as_operand(k, "k"), as_operand(v, "v"), head_dim_v_ok=True)  # shapes first
        _variants(variant_args, qo, problem, causal)  # bad variant values are refused before any launch
        if problem.head_dim_v and (problem.head_dim, problem.head_dim_v) not in HEAD_DIM_PAIRS:
            raise InputError(no_v_head_dim_gradients(problem.head_dim, problem.head_dim_v))
        why = differentiable_problem(kind=qo.kind, dtype=qo.dtype, arch=device_arch(qo.device)[0],
                                     head_dim=problem.head_dim_v or problem.head_dim)  # a pair: its V head dim
        if why is not None:
            raise InputError(why)
        # The backward takes contiguous tensors: a strided view is copied here, for training only; with
        # ops/backward_wgmma.STRIDED it reads views whose rows it can in place (autograd.backward_inputs).
        (q, k, v), in_place = backward_inputs(q, k, v)
        result = differentiable_attention(attention_forward, q, k, v, causal=bool(causal), scale=scale,
                                          deterministic=bool(deterministic), config=config, return_lse=return_lse,
                                          causal_alignment=causal_alignment, **variant_args)
        if plain and in_place:  # next time: the Function with the forward's and the backward's plans
            keys = (call_plans.call_key(q, k, v, causal, causal_alignment, scale, flag, config, None)
                    for flag in (return_lse, True))  # this call's (its type now registered), its forward's
            training_plans.remember(*keys, deterministic, causal, causal_alignment, scale)
        return result
    return attention_forward(q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                             return_lse=return_lse, config=config, **variant_args)


if attention.__doc__:  # None under python -OO
    attention.__doc__ = attention.__doc__.replace("{variants}", VARIANTS_DOC)


def _variants(args: dict, qo: Operand, problem: Problem, causal: bool) -> Variants:
    return check_variants(**args, causal=bool(causal), kind=qo.kind, device=qo.device, batch=problem.batch,
                          heads_q=problem.heads_q)


def check_alignment(causal_alignment) -> None:
    if causal_alignment not in CAUSAL_ALIGNMENTS:
        raise InputError(f"causal_alignment must be one of {CAUSAL_ALIGNMENTS}, got {causal_alignment!r}")


def _needs_grad(q, k, v, sinks=None) -> bool:
    import torch

    return torch.is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in (q, k, v, sinks))


def _pinned_config(config) -> KernelConfig | DecodeConfig | None:
    """The caller's config as a forward or decode config. from_dict validates a dict; a config
    object is validated when it is first rendered (loaded kernels are cached), so calls after
    the first pay nothing for it."""
    if config is None or isinstance(config, (KernelConfig, DecodeConfig)):
        return config
    if not isinstance(config, dict):
        raise InputError(f"config must be a KernelConfig, a DecodeConfig or a dict, got {type(config).__name__}")
    cfg = OpConfig.from_dict(config)
    if not isinstance(cfg, (KernelConfig, DecodeConfig)):
        raise InputError(f"config {cfg.name} is a {cfg.op} config; attention() runs forward or decode configs")
    return cfg


def attention_forward(q, k, v, *, causal: bool = False, causal_alignment: str = "top_left",
                      scale: float | None = None, return_lse: bool = False,
                      config: KernelConfig | DecodeConfig | dict | None = None, window_size=(-1, -1), softcap=None,
                      sinks=None, alibi_slopes=None):
    """attention() without autograd: the forward or decode kernel, as route_attention decides
    (the torch drop-in's custom ops and the autograd Function call this)."""
    return forward_tagged(None, q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                          return_lse=return_lse, config=config, window_size=window_size, softcap=softcap,
                          sinks=sinks, alibi_slopes=alibi_slopes)


def forward_tagged(tag, q, k, v, *, causal: bool = False, causal_alignment: str = "top_left",
                   scale: float | None = None, return_lse: bool = False,
                   config: KernelConfig | DecodeConfig | dict | None = None, window_size=(-1, -1), softcap=None,
                   sinks=None, alibi_slopes=None):
    """attention_forward whose call plans are kept under `tag` (hashable): a caller with checks of
    its own (the torch drop-in) finds its plans only where its checks passed."""
    out = call_plans.served(tag, q, k, v, causal, causal_alignment, scale, return_lse, config, window_size, softcap,
                            sinks, alibi_slopes)
    if out is not None:
        return out
    check_alignment(causal_alignment)
    qo, ko, vo = as_operand(q, "q"), as_operand(k, "k"), as_operand(v, "v")
    problem = check_inputs(qo, ko, vo, head_dim_v_ok=True)
    problem.causal = causal = bool(causal)
    variants = _variants(dict(window_size=window_size, softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes),
                         qo, problem, causal).apply(problem)
    flags = variants.flags()
    if problem.head_dim_v:  # a key field only when Dv != Dqk (old entries read 0: key_flags.py)
        flags["head_dim_v"] = problem.head_dim_v
    if causal or flags["window"] or flags["alibi"]:  # the diagonal they measure from
        problem.causal_offset = causal_offset(causal_alignment, problem.seq_q, problem.seq_k)
    scale_value = check_scale(scale, problem.head_dim)
    arch, device_name = device_arch(qo.device)
    pinned = _pinned_config(config)
    route = route_attention(kind=qo.kind, dtype=qo.dtype, arch=arch, batch=problem.batch, heads_q=problem.heads_q,
                            heads_kv=problem.heads_kv, seq_q=problem.seq_q, seq_k=problem.seq_k,
                            head_dim=problem.head_dim, causal=causal, causal_alignment=causal_alignment,
                            variants=tuple(variants.names()), head_dim_v=problem.head_dim_v)
    if isinstance(pinned, DecodeConfig) and route.op != "decode":
        raise InputError(f"config {pinned.name} is a decode config, and decode cannot serve this call: {route.reason}")
    if route.op == "decode" and not isinstance(pinned, KernelConfig):
        # Causal reaches decode only when its bottom-right mask is the one asked for (route_attention).
        # check_inputs and route_attention established what check_decode would: launch only.
        return launch_decode(q, k, v, causal=causal, softmax_scale=scale_value, return_lse=return_lse,
                             layout="bhsd", config=pinned, variants=variants if variants.any else None)
    if pinned is None:
        cfg = choose_config(arch, device_name, qo.dtype, problem.head_dim, causal, problem.seq_k, flags)
    else:
        cfg = pinned
        have = (cfg.dtype, cfg.head_dim, cfg.causal, *(getattr(cfg, f) for f in flags))
        if have != (qo.dtype, problem.head_dim, causal, *flags.values()):
            raise InputError(f"config {cfg.name} is for (dtype, head_dim, causal, {', '.join(flags)})={have}, "
                             f"inputs need {(qo.dtype, problem.head_dim, causal, *flags.values())}")
        if cfg.head_dim_v != problem.head_dim_v:
            raise InputError(f"config {cfg.name} has head_dim_v={cfg.head_dim_v}, the inputs {problem.head_dim_v}")
    out_shape = (*qo.shape[:3], problem.dim_v)
    # under ops/backward_wgmma.STRIDED, O in q's dimension order (serve/out_layout.py; foreign arrays: contiguous)
    order = out_layout.order(qo.shape, qo.strides, problem.dim_v, ELEMENT_BYTES[qo.dtype]) if qo.wrap is None else None
    if order is not None:
        problem.strides = (*problem.strides[:3], dense_strides(out_shape, order)[:3])
    out = _empty_like(qo, out_shape, qo.dtype) if order is None else _empty_in_order(qo, out_shape, order)
    lse = _empty_like(qo, qo.shape[:3], "fp32") if return_lse else None
    launched = launch_forward(cfg, qo, ko, vo, problem, scale_value, out, lse)
    if qo.wrap is None and call_plans.plain(window_size, softcap, sinks, alibi_slopes):  # next time: the launch only
        call_plans.remember(call_plans.CallPlan(qo.kind, qo.device, out_shape, qo.shape[:3], launched,
                                                arch if pinned is None else None, order),
                            q, k, v, causal, causal_alignment, scale, return_lse, config, tag)
    out, lse = _result(qo, out), _result(qo, lse)
    return (out, lse) if return_lse else out


def launch_forward(cfg: KernelConfig, qo: Operand, ko: Operand, vo: Operand, problem: Problem, scale: float,
                   out, lse):
    """One forward kernel launch of checked operands on q's stream (attention() and serve/varlen.py);
    returns the launch plan it used."""
    kernel = loaded_kernel(cfg, qo.device)
    args = (qo.ptr, ko.ptr, vo.ptr, _pointer(out), _pointer(lse) if lse is not None else 0, _stream(qo))
    cupy = frameworks.cupy()
    if cupy.cuda.runtime.getDevice() == qo.device:
        launch_plan = plan(kernel, problem, scale)
        launch_plan(*args)
    else:  # the plan too is built on the kernel's device (its grid reads the SM count)
        with cupy.cuda.Device(qo.device):
            launch_plan = plan(kernel, problem, scale)
            launch_plan(*args)
    return launch_plan
