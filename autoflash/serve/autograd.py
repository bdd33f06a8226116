"""Gradients for PyTorch tensors: attention_backward() (the flash_bwd_mma backward, ops/backward.py)
and the autograd.Function behind autoflash.attention(...) on inputs that require grad. The
forward saves O and the LSE, never P; the backward recomputes P from Q, K and the LSE.

torch is imported where used (this module loads with `import autoflash`). The drop-in
(integrations/torch.py) registers the same backward with torch.library instead.
"""
from __future__ import annotations

import functools

from autoflash.kernels.archs import build_arch
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel
from autoflash.ops.backward import OPERATION, TEMPLATE
from autoflash.ops.backward_gpu import launch_plan
from autoflash.ops.backward_kernels import HEAD_DIM_PAIRS, BackwardConfig, TensorSpec, check_inputs, row_strides
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import serving_config, takes_strides
from autoflash.serve import backward_plans, dispatch, frameworks
from autoflash.serve.errors import InputError
from autoflash.serve.operands import TORCH_DTYPES, check_scale
from autoflash.serve.variants import check_variants


def tensor_spec(name: str, t) -> TensorSpec:
    if not type(t).__module__.startswith("torch") or not hasattr(t, "data_ptr"):
        raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return TensorSpec(name, tuple(t.shape), TORCH_DTYPES.get(str(t.dtype), str(t.dtype)), str(t.device),
                      t.is_contiguous(), t.data_ptr() % 16 == 0)


@functools.cache
def _loaded(cfg: BackwardConfig, device: int):
    """Compiled once per process (disk cache), loaded once per device."""
    import cupy

    compiled = compile_kernel(cfg)
    with cupy.cuda.Device(device):
        return LoadedKernel(compiled)


def _served_config(device: int, key: dict, seq_len: int, head_dim_v: int = 0) -> BackwardConfig:
    """The tuned flash_bwd_mma entry for this key and length (tuned_configs/, nearest bucket), else the
    heuristic default; dispatch.explain caches the answer per problem (re-deriving the default on
    every call took ~3 % of a 5 ms backward on the H200). V's own head dim (head_dim_v, not tuned):
    flash_bwd_mma's default tile for the pair."""
    arch, device_name = device_arch(device)
    if head_dim_v:
        return _pair_default(arch, tuple(sorted(key.items())), head_dim_v)
    wgmma = serving_config(arch, key)  # flash_bwd_wgmma where it serves the key (H200: 1.3-1.4x flash_bwd_mma)
    if wgmma is not None:  # its tuned entry for this GPU and length, else its own default
        return dispatch.explain(arch, device_name, OPERATION.name, key, seq_len, template=wgmma.template,
                                default=wgmma)[0]
    return dispatch.explain(arch, device_name, OPERATION.name, key, seq_len, template=TEMPLATE.name)[0]


@functools.cache
def _pair_default(arch: str, key_items: tuple, head_dim_v: int) -> BackwardConfig:
    use = build_arch(TEMPLATE.archs, arch)
    if use is None:
        raise InputError(f"the backward needs one of {list(TEMPLATE.archs)}, this GPU is {arch}")
    return TEMPLATE.default(use, {**dict(key_items), "head_dim_v": head_dim_v})


def attention_backward(q, k, v, out, lse, grad_out, *, causal: bool = False, causal_alignment: str = "top_left",
                       scale: float | None = None, deterministic: bool = False,
                       config: BackwardConfig | dict | None = None, window_size=(-1, -1), softcap=None,
                       sinks=None, alibi_slopes=None):
    """Gradients (dq, dk, dv) of attention(q, k, v, causal, scale) for upstream grad_out.

    q: (batch, heads_q, seq_q, head_dim); k: (batch, heads_kv, seq_k, head_dim); v: (batch, heads_kv,
    seq_k, head_dim_v); out, grad_out: (batch, heads_q, seq_q, head_dim_v); head_dim_v = head_dim, or
    V's own head dim for the pairs ops.backward_kernels.HEAD_DIM_PAIRS (192/128 and 128/64,
    flash_bwd_mma); fp16 or bf16 CUDA tensors, contiguous; lse: the forward's float32 natural-log log-sum-exp
    (batch, heads_q, seq_q), e.g. from autoflash.attention(..., return_lse=True). causal_alignment
    as the forward's: "top_left" (query i sees keys 0..i) or "bottom_right" (keys 0..i + seq_k - seq_q;
    a row that sees no key has LSE -inf from the forward and gets dq = 0, contributing nothing
    to dk, dv). GQA/MQA: dk, dv are summed over each group's query heads.
    deterministic=True: bitwise repeatable dq (its adds serialised), at a cost.
    Variants (issue 17), the forward's arguments with its meaning (serve/variants.py; lse must be
    that forward's, which includes the sinks): window_size, softcap (exact gradient through the
    tanh), alibi_slopes (no gradient: the bias is constant), sinks (float32 (heads_q,)): then the
    sinks' gradient dsinks (float32 (heads_q,)) is returned too.
    Returns new tensors (dq, dk, dv in the inputs' dtype; dsinks when sinks are given), computed on
    the current stream. With ops/backward_wgmma.STRIDED on (the default): q, k, v, out, grad_out may be views
    whose head dim is contiguous and whose batch, head and token strides are multiples of 16 bytes (e.g. q, k, v
    of a fused projection), read in place, and dq, dk, dv are laid out as torch.empty_like(q, k, v).
    """
    grads = backward_plans.served(q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, config,
                                  window_size, softcap, sinks, alibi_slopes)
    if grads is not None:  # a call checked before, served by its plan (serve/backward_plans.py)
        return grads
    specs = [tensor_spec(n, t) for n, t in zip(("q", "k", "v", "out", "lse", "grad_out"),
                                                (q, k, v, out, lse, grad_out))]
    if len(specs[0].shape) != 4:
        raise InputError(f"q must have 4 dimensions (batch, heads, seq, head_dim), got {specs[0].shape}")
    variants = check_variants(window_size, softcap, sinks, alibi_slopes, causal=bool(causal), kind="torch",
                              device=q.get_device(), batch=specs[0].shape[0], heads_q=specs[0].shape[1])
    flags = variants.flags()
    p = check_inputs(*specs, causal, causal_alignment, window=(variants.window_left, variants.window_right),
                     softcap=variants.softcap, alibi_batch_stride=variants.alibi_batch_stride if flags["alibi"] else -1,
                     strides=tuple(t.stride() for t in (q, k, v, out, grad_out)) if backward_wgmma.STRIDED else None)
    scale_value = check_scale(scale, p.head_dim)
    device = q.device.index if q.device.index is not None else frameworks.torch().cuda.current_device()
    key = dict(dtype=specs[0].dtype, head_dim=p.head_dim, causal=p.causal,
               deterministic=bool(deterministic), **flags)
    keep = backward_plans.plain(window_size, softcap, sinks, alibi_slopes)
    arch = device_arch(device)[0] if keep and config is None else None
    stamp = dispatch.files_stamp(arch) if arch is not None else None  # the files' state the choice is made from
    cfg = _served_config(device, key, p.seq_k, p.head_dim_v) if config is None else pinned_config(config, key,
                                                                                                  p.head_dim_v)
    tensors = (q, k, v, out, lse, grad_out)
    if backward_wgmma.STRIDED:  # views read in place; gradients laid out like the inputs (torch.empty_like)
        return _strided_call(cfg, device, p, scale_value, tensors, variants, keep, arch, stamp,
                             (causal, causal_alignment, scale, deterministic, config))
    plan = launch_plan(_loaded(cfg, device), p, scale_value)
    grads = _launch_packed(plan, device, p, tensors, variants)
    if keep:  # next time: the allocations and the launches only
        backward_plans.remember(backward_plans.BackwardPlan(device, plan, (q.shape, k.shape, v.shape), arch, stamp),
                                q, k, v, out, lse, grad_out, causal, causal_alignment, scale, deterministic, config)
    return grads


def _strided_call(cfg, device: int, p, scale: float, tensors: tuple, variants, keep: bool, arch, stamp, args: tuple):
    """A call under STRIDED (check_inputs accepted the rows of q, k, v, out, grad_out: p.strides holds theirs): dq, dk,
    dv are torch.empty_like(q, k, v) (the drop-in's fake gives that layout too). flash_bwd_wgmma reads the inputs and
    writes the gradients in place; flash_bwd_mma (the other keys) reads contiguous copies and writes contiguous rows,
    copied into the gradients where those are not contiguous. Planned where nothing was copied."""
    outputs = tuple(frameworks.torch().empty_like(t) for t in tensors[:3])
    in_place = takes_strides(cfg)
    if in_place:
        p.strides = p.strides + tuple(row_strides(n, tuple(o.shape), tuple(o.stride()), o.element_size())
                                      for n, o in zip(("dq", "dk", "dv"), outputs))
        read = tensors
    else:
        p.strides = None
        read = tuple(t.contiguous() for t in tensors)
    direct = in_place or all(o.is_contiguous() for o in outputs)
    plan = launch_plan(_loaded(cfg, device), p, scale)
    grads = _launch_packed(plan, device, p, read, variants, outputs=outputs if direct else None)
    if keep and direct and all(r is t for r, t in zip(read, tensors)):
        entry = backward_plans.BackwardPlan(device, plan, tuple(o.shape for o in outputs), arch, stamp,
                                            tuple(o.stride() for o in outputs))
        backward_plans.remember(entry, *tensors, *args)
    if direct:
        return grads
    for o, g in zip(outputs, grads):
        o.copy_(g)
    return outputs + tuple(grads[3:])


def _launch_packed(plan, device: int, p, tensors: tuple, variants, outputs=None, **cu_seqlens):
    """The plan's launches through its packed sequence, on dq, dk, dv (outputs, else allocated here; and dsinks)."""
    q, k, v = tensors[:3]
    dq, dk, dv = outputs or (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape))
    workspace = q.new_empty((max(plan.workspace_bytes, 256),), dtype=frameworks.torch().uint8)
    dsinks = q.new_empty((p.heads_q,), dtype=frameworks.torch().float32) if variants.sinks is not None else None
    pointers = dict(sinks=variants.sinks_ptr, alibi_slopes=variants.alibi_ptr,
                    dsinks=0 if dsinks is None else dsinks.data_ptr(), **cu_seqlens)
    plan.check_pointers(**pointers)
    ptrs = plan.pointers(*(t.data_ptr() for t in tensors), dq.data_ptr(), dk.data_ptr(), dv.data_ptr(),
                         workspace.data_ptr(), **pointers)
    cupy = frameworks.cupy()
    if cupy.cuda.runtime.getDevice() == device:
        plan.packed()(ptrs, frameworks.raw_stream()(device))
    else:
        with cupy.cuda.Device(device):
            plan.packed()(ptrs, frameworks.raw_stream()(device))
    return (dq, dk, dv) if dsinks is None else (dq, dk, dv, dsinks)


def pinned_config(config, key: dict, head_dim_v: int = 0) -> BackwardConfig:
    """A caller's config (a BackwardConfig or its dict form), refused unless it is for the inputs' key."""
    cfg = config if isinstance(config, BackwardConfig) else BackwardConfig.from_dict(config)
    if OPERATION.key_of(cfg) != key or cfg.head_dim_v != head_dim_v:
        raise InputError(f"config {cfg.name} is for {OPERATION.key_of(cfg)} head_dim_v={cfg.head_dim_v}, the "
                         f"inputs need {key} head_dim_v={head_dim_v}")
    return cfg


def launch_backward(cfg: BackwardConfig, device: int, p, scale: float, tensors: tuple, variants, **cu_seqlens):
    """Runs cfg's backward for problem p on the current torch stream of device: tensors are the checked
    (q, k, v, out, lse, grad_out); cu_seqlens (varlen) the device pointers cu_seqlens_q / cu_seqlens_k.
    Returns new (dq, dk, dv) shaped as q, k, v, and dsinks (float32 (heads_q,)) last with sinks."""
    plan = launch_plan(_loaded(cfg, device), p, float(scale))
    return _launch_packed(plan, device, p, tensors, variants, **cu_seqlens)


def kernel_ready(grad_out):
    """autograd's upstream gradient as the kernels read it: contiguous, 16-byte aligned; with STRIDED, as it is
    where its rows can be read in place (attention_backward copies it for flash_bwd_mma)."""
    if backward_wgmma.STRIDED and readable_rows(grad_out):
        return grad_out
    return aligned_contiguous(grad_out)


def aligned_contiguous(t):
    """t contiguous and 16-byte aligned (a view at an odd offset is copied): the kernels read 16-byte vectors."""
    t = t.contiguous()
    return t.clone() if t.data_ptr() % 16 else t


def backward_inputs(*tensors) -> tuple[tuple, bool]:
    """The tensors as the backward reads them (contiguous copies, but views whose rows STRIDED reads in place) and
    whether none was copied (then the call may be planned)."""
    reads = [t.is_contiguous() or (backward_wgmma.STRIDED and readable_rows(t)) for t in tensors]
    return tuple(t if read else t.contiguous() for t, read in zip(tensors, reads)), all(reads)


def readable_rows(t) -> bool:
    """A 4-D tensor whose rows the strided backward reads in place (check_inputs' row_strides passes)."""
    if t.dim() != 4 or t.data_ptr() % 16:
        return False
    try:
        row_strides("t", tuple(t.shape), tuple(t.stride()), t.element_size())
    except ValueError:
        return False
    return True


@functools.cache
def attention_function():
    """The torch.autograd.Function class (built on first use: defining it imports torch).

    apply(forward, q, k, v, causal, scale, deterministic, config, causal_alignment, window_size, softcap,
    sinks, alibi_slopes): `forward` is the non-differentiable forward (serve/api.attention_forward,
    passed in because serve/api imports this module), called with return_lse=True and the
    variants; O and LSE are saved for the backward. sinks (a tensor) gets its gradient when it
    requires one; alibi_slopes never (constant)."""
    import torch

    class AttentionFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, forward, q, k, v, causal, scale, deterministic, config, causal_alignment,
                    window_size=(-1, -1), softcap=None, sinks=None, alibi_slopes=None):
            variants = dict(window_size=window_size, softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes)
            out, lse = forward(q, k, v, causal=causal, causal_alignment=causal_alignment, scale=scale,
                               return_lse=True, config=config, **variants)
            ctx.save_for_backward(q, k, v, out, lse, sinks, alibi_slopes)
            ctx.mark_non_differentiable(lse)
            ctx.causal, ctx.scale, ctx.deterministic = causal, scale, deterministic
            ctx.causal_alignment, ctx.window_size, ctx.softcap = causal_alignment, window_size, softcap
            return out, lse

        @staticmethod
        def backward(ctx, grad_out, _grad_lse):
            q, k, v, out, lse, sinks, alibi_slopes = ctx.saved_tensors
            grads = attention_backward(q, k, v, out, lse, kernel_ready(grad_out), causal=ctx.causal,
                                       causal_alignment=ctx.causal_alignment, scale=ctx.scale,
                                       deterministic=ctx.deterministic, window_size=ctx.window_size,
                                       softcap=ctx.softcap, sinks=sinks, alibi_slopes=alibi_slopes)
            dq, dk, dv = grads[:3]
            dsinks = grads[3].to(sinks.dtype) if sinks is not None and ctx.needs_input_grad[11] else None
            return None, dq, dk, dv, None, None, None, None, None, None, None, dsinks, None

    return AttentionFunction


def differentiable_attention(forward, q, k, v, *, causal: bool, scale, deterministic: bool, config,
                             return_lse: bool, causal_alignment: str = "top_left", window_size=(-1, -1),
                             softcap=None, sinks=None, alibi_slopes=None):
    """autoflash.attention's path for inputs that require grad (checked by the caller), variants
    included (their values checked by the forward it calls); sinks that require grad get theirs."""
    out, lse = attention_function().apply(forward, q, k, v, causal, scale, deterministic, config,
                                          causal_alignment, window_size, softcap, sinks, alibi_slopes)
    return (out, lse) if return_lse else out


def no_v_head_dim_gradients(head_dim: int, head_dim_v: int) -> str:
    """Why a Dqk != Dv problem gets no gradients."""
    pairs = ", ".join(f"{d}/{dv}" for d, dv in HEAD_DIM_PAIRS)
    return (f"no gradients with v's head dim ({head_dim_v}) != q/k's ({head_dim}): the backward serves Dqk/Dv "
            f"pairs {pairs} only (flash_bwd_mma); call the forward under torch.no_grad()")
