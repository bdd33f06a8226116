"""Gradients of attention_varlen (issue 16 item 2): attention_varlen_backward() and the
autograd.Function behind attention_varlen(...) on PyTorch tensors that require grad.

flash-attn's varlen semantics: q, out, grad_out, dq packed (total_q, heads_q, D); k, v, dk, dv
(total_k, heads_kv, D); lse (heads_q, total_q); causal (and window, ALiBi) per sequence in the
alignment the forward used; GQA dK/dV summed over each group. Served by flash_bwd_mma with its
`varlen` flag on every arch (flash_bwd_wgmma has no varlen mode yet): one block per (K/V tile,
K/V head, sequence), no work on padding; the tuned dense flash_bwd_mma entry for the key is used
with varlen=True. torch is imported where used.
"""
from __future__ import annotations

import functools

from autoflash.kernels.device import device_arch
from autoflash.ops.backward import OPERATION, TEMPLATE
from autoflash.ops.backward_kernels import BackwardConfig, TensorSpec, check_inputs
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE
from autoflash.serve import dispatch
from autoflash.serve.autograd import kernel_ready, launch_backward, pinned_config, tensor_spec
from autoflash.serve.errors import InputError
from autoflash.serve.operands import as_operand, check_scale
from autoflash.serve.routing import differentiable_problem
from autoflash.serve.variants import check_variants
from autoflash.serve.varlen_index import check_offsets, host_index

API = "autoflash.attention_varlen()"


def _as_batch_spec(spec: TensorSpec, shape: tuple) -> TensorSpec:
    """A packed tensor's spec seen as check_inputs' one-batch dense shape (layout checked separately)."""
    return TensorSpec(spec.name, shape, spec.dtype, spec.device, spec.contiguous, spec.aligned)


def check_packed(q, k, v, out, lse, grad_out) -> list[TensorSpec]:
    """The packed operands' specs as (1, heads, total, D) (lse (1, heads_q, total_q)), or InputError."""
    specs = [tensor_spec(n, t) for n, t in zip(("q", "k", "v", "out", "lse", "grad_out"), (q, k, v, out, lse, grad_out))]
    for s in specs[:4] + specs[5:]:
        if len(s.shape) != 3:
            raise InputError(f"{s.name} must have 3 dimensions (total_tokens, heads, head_dim), got {s.shape}")
    for s in (specs[3], specs[5]):
        if s.shape != specs[0].shape:
            raise InputError(f"{s.name} must have q's shape {specs[0].shape}, got {s.shape}")
    total_q, heads_q, _ = specs[0].shape
    if len(specs[4].shape) != 2 or specs[4].shape != (heads_q, total_q):
        raise InputError(f"lse must be float32 (heads_q, total_q) = {(heads_q, total_q)} (attention_varlen's "
                         f"return_lse layout), got {specs[4].shape}")
    dense = [_as_batch_spec(s, (1, s.shape[1], s.shape[0], s.shape[2])) for s in specs[:4]]
    return dense + [_as_batch_spec(specs[4], (1,) + specs[4].shape),
                    _as_batch_spec(specs[5], (1, heads_q, total_q, specs[5].shape[2]))]


def attention_varlen_backward(q, k, v, out, lse, grad_out, cu_seqlens_q, cu_seqlens_k, max_seqlen_q: int,
                              max_seqlen_k: int, *, causal: bool = False, causal_alignment: str = "bottom_right",
                              softmax_scale: float | None = None, deterministic: bool = False,
                              window_size=(-1, -1), softcap=None, sinks=None, alibi_slopes=None,
                              config: BackwardConfig | dict | None = None):
    """Gradients (dq, dk, dv) of attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, ...) for
    upstream grad_out. Arguments as attention_varlen's (same causal_alignment default, variants);
    out and lse (float32 (heads_q, total_q)) are that forward's; every tensor contiguous, fp16/bf16
    (lse fp32), on one GPU. cu_seqlens are copied to the host and checked before any launch.
    deterministic=True: bitwise repeatable dq. Returns new (dq, dk, dv) in the packed shapes of q, k,
    v, and dsinks (float32 (heads_q,)) last when sinks are given."""
    specs = check_packed(q, k, v, out, lse, grad_out)  # dtypes, head dims, layout: check_inputs below
    qo = as_operand(q, "q")
    cq, ck = host_index(cu_seqlens_q, "cu_seqlens_q", qo, None), host_index(cu_seqlens_k, "cu_seqlens_k", qo, None)
    if len(ck) != len(cq):
        raise InputError(f"cu_seqlens_q has {len(cq)} entries and cu_seqlens_k {len(ck)}; both must be batch + 1")
    batch = len(cq) - 1
    spans_q = check_offsets(cq, "cu_seqlens_q", specs[0].shape[2], max_seqlen_q, "max_seqlen_q")
    spans_k = check_offsets(ck, "cu_seqlens_k", specs[1].shape[2], max_seqlen_k, "max_seqlen_k")
    variants = check_variants(window_size, softcap, sinks, alibi_slopes, causal=bool(causal), kind="torch",
                              device=q.get_device(), batch=batch, heads_q=specs[0].shape[1])
    flags = variants.flags()
    dense = check_inputs(*specs, causal, "top_left", window=(variants.window_left, variants.window_right),
                         softcap=variants.softcap,
                         alibi_batch_stride=variants.alibi_batch_stride if flags["alibi"] else -1)
    p = dense.__class__(batch, dense.heads_q, dense.heads_kv, max(int(spans_q.max(initial=0)), 1),
                        max(int(spans_k.max(initial=0)), 1), dense.head_dim, dense.causal)
    p.window_left, p.window_right, p.softcap = dense.window_left, dense.window_right, dense.softcap
    p.alibi_batch_stride = dense.alibi_batch_stride
    p.total_q, p.total_k = specs[0].shape[2], specs[1].shape[2]
    if p.causal or flags["window"] or flags["alibi"]:  # the diagonal, per sequence
        p.causal_offset = BOTTOM_RIGHT_PER_SEQUENCE if causal_alignment == "bottom_right" else 0
    scale = check_scale(softmax_scale, p.head_dim, "softmax_scale")
    import torch

    device = q.device.index if q.device.index is not None else torch.cuda.current_device()
    key = dict(dtype=specs[0].dtype, head_dim=p.head_dim, causal=p.causal, deterministic=bool(deterministic), **flags)
    cfg = _served_config(device, key, p.seq_k) if config is None else _pinned(config, key)
    return launch_backward(cfg, device, p, scale, (q, k, v, out, lse, grad_out), variants,
                           cu_seqlens_q=cu_seqlens_q.data_ptr(), cu_seqlens_k=cu_seqlens_k.data_ptr())


def _served_config(device: int, key: dict, seq_len: int) -> BackwardConfig:
    """The dense flash_bwd_mma entry for the key (tuned or default) in its varlen mode, or where the
    template's rules refuse that tile in varlen mode (registers), its varlen default. flash_bwd_wgmma,
    which serves dense keys on sm_90, has no varlen mode yet: varlen always runs flash_bwd_mma."""
    arch, device_name = device_arch(device)
    cfg = dispatch.explain(arch, device_name, OPERATION.name, key, seq_len, template=TEMPLATE.name)[0]
    cfg = cfg.replace(varlen=True)
    return cfg if not cfg.problems() else TEMPLATE.default(cfg.arch, {**key, "varlen": True})


def _pinned(config, key: dict) -> BackwardConfig:
    cfg = pinned_config(config, key)
    if cfg.template != TEMPLATE.name:
        raise InputError(f"config {cfg.name}: varlen gradients run {TEMPLATE.name} ({cfg.template} has no varlen mode)")
    return cfg.replace(varlen=True).validate()


def check_differentiable(qo, k, v, seqused_k) -> None:
    """attention_varlen's refusals for inputs that require grad, before anything launches."""
    if seqused_k is not None:
        raise InputError("attention_varlen has no backward with seqused_k yet; call it under torch.no_grad() "
                         "or without seqused_k")
    if v.shape[-1] != k.shape[-1]:
        raise InputError(f"no gradients with v's head dim ({v.shape[-1]}) != q/k's ({k.shape[-1]}): the varlen "
                         "backward has Dqk = Dv (call it under torch.no_grad())")
    why = differentiable_problem(kind=qo.kind, dtype=qo.dtype, arch=device_arch(qo.device)[0],
                                 head_dim=qo.shape[-1], api=API)
    if why is not None:
        raise InputError(why)


@functools.cache
def varlen_function():
    """The torch.autograd.Function class (built on first use: defining it imports torch).
    apply(forward, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
    causal_alignment, softmax_scale, deterministic, window_size, softcap, sinks, alibi_slopes):
    `forward` is attention_varlen without autograd (passed in: serve/varlen imports this module),
    called with return_lse=True; O and LSE are saved, not P."""
    import torch

    class VarlenAttentionFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, forward, q, k, v, cu_q, cu_k, max_q, max_k, causal, alignment, scale, deterministic,
                    window_size, softcap, sinks, alibi_slopes):
            out, lse = forward(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal, causal_alignment=alignment,
                               softmax_scale=scale, window_size=window_size, softcap=softcap, sinks=sinks,
                               alibi_slopes=alibi_slopes, return_lse=True)
            ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, sinks, alibi_slopes)
            ctx.mark_non_differentiable(lse)
            ctx.args = dict(max_seqlen_q=max_q, max_seqlen_k=max_k, causal=causal, causal_alignment=alignment,
                            softmax_scale=scale, deterministic=deterministic, window_size=window_size, softcap=softcap)
            return out, lse

        @staticmethod
        def backward(ctx, grad_out, _grad_lse):
            q, k, v, out, lse, cu_q, cu_k, sinks, alibi_slopes = ctx.saved_tensors
            grads = attention_varlen_backward(q, k, v, out, lse, kernel_ready(grad_out), cu_q, cu_k, sinks=sinks,
                                              alibi_slopes=alibi_slopes, **ctx.args)
            dsinks = grads[3].to(sinks.dtype) if sinks is not None and ctx.needs_input_grad[14] else None
            return (None, *grads[:3]) + (None,) * 10 + (dsinks, None)

    return VarlenAttentionFunction


def differentiable_varlen(forward, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *, causal,
                          causal_alignment, softmax_scale, deterministic, window_size, softcap, sinks, alibi_slopes,
                          return_lse):
    """attention_varlen's path for torch inputs that require grad (checked by check_differentiable);
    q, k, v are made contiguous here (the backward reads packed contiguous tensors)."""
    q, k, v = (t if t.is_contiguous() and t.data_ptr() % 16 == 0 else t.contiguous() for t in (q, k, v))
    out, lse = varlen_function().apply(forward, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                       bool(causal), causal_alignment, softmax_scale, bool(deterministic),
                                       window_size, softcap, sinks, alibi_slopes)
    return (out, lse) if return_lse else out
