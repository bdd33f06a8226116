"""autoflash.attention_varlen(): packed variable-length batches in flash-attn's names and layout
(flash_attn_varlen_func), and attention_with_seqused_k(): a dense batch whose sequences use only
their first seqused_k[b] keys (chunked prefill against a KV cache). Both run the dense forward's
kernels and tuned configs: varlen is a run-time mode of every forward template (cu_seqlens
pointers; blocks past their sequence's end return at once), not a config of its own.

Index arrays (cu_seqlens_q/k, seqused_k) live on the GPU, as flash-attn takes them; they are
copied to the host and checked before the launch (B + 1 ints: one small synchronous copy), so a
kernel never reads outside q, k or v because of a bad index. What is checked where:
- attention_varlen: cu_seqlens_q/k (and seqused_k) on the host, every call. That copy cannot happen
  while a CUDA graph is being captured: such calls are refused. prepare_varlen checks once and
  returns a launch with no host work (graph capture of a fixed batch; the caller keeps the values valid).
- attention_with_seqused_k: seqused_k on the host, except during CUDA graph capture, where the
  kernel clamps each seqused_k[b] to [0, seq_k] (common.cuh.j2 sequence_span): a bad value gives
  wrong rows, never a read outside k or v (decode's rule for cache_seqlens, serve/decode.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from autoflash.kernels.device import device_arch
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE, Problem
from autoflash.serve import api, varlen_grad
from autoflash.serve.errors import InputError
from autoflash.serve.operands import check_scale
from autoflash.serve.variants import VARIANTS_DOC, check_variants
from autoflash.serve.varlen_index import check_offsets as _check_offsets
from autoflash.serve.varlen_index import host_index as _host_index


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q: int, max_seqlen_k: int, *,
                     causal: bool = False, causal_alignment: str = "bottom_right", softmax_scale: float | None = None,
                     window_size: tuple[int, int] = (-1, -1), softcap: float | None = None, sinks=None,
                     alibi_slopes=None, return_lse: bool = False, seqused_k=None, deterministic: bool = False):
    """Attention over a packed batch of sequences of different lengths, no work spent on padding.

    q: (total_q, heads_q, head_dim); k, v: (total_k, heads_kv, head_dim), heads_q a multiple of
      heads_kv (GQA/MQA); PyTorch CUDA tensors or CuPy arrays (fp32, fp16, bf16), any token and
      head strides (multiples of 16 bytes) with head_dim contiguous: read in place. v may have a
      head dim of its own (Dv != Dqk, e.g. 192/128 for MLA prefill; forward only): out is then
      (total_q, heads_q, Dv).
    cu_seqlens_q, cu_seqlens_k: int32 (batch + 1,) on q's device, same kind as q: sequence b's
      queries are q[cu_seqlens_q[b]:cu_seqlens_q[b + 1]], its keys k[cu_seqlens_k[b]:cu_seqlens_k[b + 1]].
      Each must start at 0, never decrease and end at total_q / total_k.
    max_seqlen_q, max_seqlen_k: bounds on the sequence lengths (every span must be <= them).
    seqused_k: optional int32 (batch,): sequence b uses only its first seqused_k[b] keys
      (<= its cu_seqlens_k span).
    The index arrays are copied to the host and checked there before the launch (2 * (batch + 1)
    ints, a small synchronous copy); calls under CUDA graph capture are refused for that reason
    (prepare_varlen: check once, then launch under capture).

    causal_alignment (used by causal, window_size and alibi_slopes), per sequence:
      "bottom_right" (default here: flash-attn's varlen convention; KV caches, chunked prefill):
        query i of a sequence with Nq queries and Nk keys (Nk = seqused_k[b] if given) has the
        diagonal key i + Nk - Nq: causal lets it see keys 0..i + Nk - Nq.
      "top_left" (torch's is_causal): the diagonal is key i.
    The two agree when Nq == Nk.
    softmax_scale: default 1/sqrt(head_dim).
{variants}

    Returns out (total_q, heads_q, head_dim_v), a new contiguous array of q's kind, dtype and device
    (on the caller's current stream), and with return_lse the log-sum-exp, float32
    (heads_q, total_q) (flash-attn's varlen layout), natural log. Bad input raises ValueError
    (InputError) before anything launches.

    Differentiable for PyTorch tensors that require grad (grad mode on): fp16/bf16, head_dim 64,
    128 or 256, sm_80+, causal either alignment, GQA (dk, dv summed over each group), the variants
    (sinks get their gradient), without seqused_k; dq, dk, dv come packed like q, k, v
    (serve/varlen_grad.py, the flash_bwd_mma backward's varlen mode). deterministic=True: bitwise
    repeatable dq. Other configurations raise InputError naming what is supported.
    """
    if type(q).__module__.startswith("torch") and api._needs_grad(q, k, v, sinks):
        qo = api.as_operand(q, "q")
        varlen_grad.check_differentiable(qo, k, v, seqused_k)
        return varlen_grad.differentiable_varlen(
            _forward, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=causal,
            causal_alignment=causal_alignment, softmax_scale=softmax_scale, deterministic=deterministic,
            window_size=window_size, softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes, return_lse=return_lse)
    return _forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=causal,
                    causal_alignment=causal_alignment, softmax_scale=softmax_scale, window_size=window_size,
                    softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes, return_lse=return_lse,
                    seqused_k=seqused_k)


def _forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **kwargs):
    """attention_varlen without autograd (the autograd Function's forward calls it with grad off)."""
    return prepare_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, **kwargs)()


if attention_varlen.__doc__:  # None under python -OO
    attention_varlen.__doc__ = attention_varlen.__doc__.replace("{variants}", VARIANTS_DOC)


def prepare_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q: int, max_seqlen_k: int, *,
                   causal: bool = False, causal_alignment: str = "bottom_right", softmax_scale: float | None = None,
                   window_size: tuple[int, int] = (-1, -1), softcap: float | None = None, sinks=None,
                   alibi_slopes=None, return_lse: bool = False, seqused_k=None):
    """attention_varlen's checks now (the one host copy of the index arrays), its launch later:
    returns a function of no arguments that launches the checked call and returns what
    attention_varlen returns, with no host work but the launch, so it can be captured in a CUDA
    graph and replayed (serving a fixed batch shape; kernel-level benchmarks). The launch reads
    q, k, v and the index arrays at the addresses given here, whatever they hold then, and trusts
    the index values: a caller that rewrites them between launches must keep them valid (same
    batch, monotone, spans within the max lengths checked here and the packed tensors), as
    flash-attn trusts them on every call. Arguments: attention_varlen's."""
    api.check_alignment(causal_alignment)
    qo, ko, vo = (api.as_operand(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    _refuse_grad(qo, q, k, v)
    for t in (qo, ko, vo):
        if len(t.shape) != 3:
            raise InputError(f"{t.name} must have 3 dimensions (total_tokens, heads, head_dim), got shape {t.shape}")
    dense = api.check_inputs(*(_as_one_batch(t) for t in (qo, ko, vo)), head_dim_v_ok=True)  # dtypes, heads, dims
    total_q, total_k = qo.shape[0], ko.shape[0]
    cq = _host_index(cu_seqlens_q, "cu_seqlens_q", qo, None)
    ck = _host_index(cu_seqlens_k, "cu_seqlens_k", qo, None)
    batch = len(cq) - 1
    if len(ck) != batch + 1:
        raise InputError(f"cu_seqlens_q has {len(cq)} entries and cu_seqlens_k {len(ck)}; both must be batch + 1")
    spans_q = _check_offsets(cq, "cu_seqlens_q", total_q, max_seqlen_q, "max_seqlen_q")
    spans_k = _check_offsets(ck, "cu_seqlens_k", total_k, max_seqlen_k, "max_seqlen_k")
    used = spans_k
    if seqused_k is not None:
        used = _host_index(seqused_k, "seqused_k", qo, batch)
        bad = np.nonzero((used < 0) | (used > spans_k))[0]
        if len(bad):
            b = int(bad[0])
            raise InputError(f"seqused_k[{b}] = {int(used[b])} is outside 0..{int(spans_k[b])} (sequence {b}'s "
                             f"cu_seqlens_k span)")
    p = dataclasses.replace(dense, batch=batch, seq_q=max(int(spans_q.max(initial=0)), 1),
                            seq_k=max(int(used.max(initial=0)), 1), total_q=total_q, total_k=total_k,
                            causal=bool(causal))
    o_strides = (0, dense.dim_v, dense.heads_q * dense.dim_v)  # the new packed output
    p.strides = (dense.strides[0], dense.strides[1], dense.strides[2], o_strides)
    p.cu_seqlens_q, p.cu_seqlens_k = api._pointer(cu_seqlens_q), api._pointer(cu_seqlens_k)
    p.seqused_k = 0 if seqused_k is None else api._pointer(seqused_k)
    variants = check_variants(window_size, softcap, sinks, alibi_slopes, causal=p.causal, kind=qo.kind,
                              device=qo.device, batch=batch, heads_q=p.heads_q).apply(p)
    p.causal_offset = BOTTOM_RIGHT_PER_SEQUENCE if causal_alignment == "bottom_right" else 0
    cfg, scale = _kernel_config(qo, p, variants.flags(), softmax_scale)

    def launch():
        out = api._empty_like(qo, (total_q, p.heads_q, p.dim_v), qo.dtype)
        lse = api._empty_like(qo, (p.heads_q, total_q), "fp32") if return_lse else None
        api.launch_forward(cfg, qo, ko, vo, p, scale, out, lse)
        out, lse = api._result(qo, out), api._result(qo, lse)
        return (out, lse) if return_lse else out

    return launch


def attention_with_seqused_k(q, k, v, seqused_k, *, causal: bool = False, causal_alignment: str = "bottom_right",
                             scale: float | None = None, return_lse: bool = False, window_size=(-1, -1),
                             softcap=None, sinks=None, alibi_slopes=None):
    """Dense attention where sequence b uses only keys 0..seqused_k[b] - 1 of its K/V: chunked
    prefill of new queries against a KV cache filled to a different length per sequence (for
    serve/kvcache.py; one forward launch, no copies).

    q: (batch, heads_q, seq_q, head_dim); k, v: (batch, heads_kv, seq_k, head_dim), any strides
    attention() takes (e.g. a (B, N, H, D) cache viewed as .transpose(1, 2)). seqused_k: int32
    (batch,) on q's device, same kind as q, each in 0..seq_k; copied to the host and checked before
    the launch (batch ints). During a CUDA graph capture (PyTorch) nothing can be copied: the values
    are not checked then, and the kernel clamps each to [0, seq_k], so a bad value gives wrong rows,
    never a read outside k or v; a captured graph replays with whatever seqused_k then holds.
    causal_alignment "bottom_right"
    (default): query i of sequence b sees keys 0..i + seqused_k[b] - seq_q (the queries are the
    newest seq_q tokens); "top_left": keys 0..i. Variants and the rest as attention().
    Returns out (batch, heads_q, seq_q, head_dim) contiguous, and with return_lse the LSE
    (batch, heads_q, seq_q) float32; a row that sees no key gives 0 and LSE -inf.
    """
    api.check_alignment(causal_alignment)
    qo, ko, vo = (api.as_operand(x, n) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    _refuse_grad(qo, q, k, v)
    p = api.check_inputs(qo, ko, vo, head_dim_v_ok=True)
    used = _host_index(seqused_k, "seqused_k", qo, p.batch, capture_ok=True)
    bad = np.nonzero((used < 0) | (used > p.seq_k))[0] if used is not None else ()  # None: capture, kernel clamps
    if len(bad):
        raise InputError(f"seqused_k[{int(bad[0])}] = {int(used[bad[0]])} is outside 0..{p.seq_k} (k's seq_k)")
    p.causal, p.seqused_k = bool(causal), api._pointer(seqused_k)
    variants = check_variants(window_size, softcap, sinks, alibi_slopes, causal=p.causal, kind=qo.kind,
                              device=qo.device, batch=p.batch, heads_q=p.heads_q).apply(p)
    p.causal_offset = BOTTOM_RIGHT_PER_SEQUENCE if causal_alignment == "bottom_right" else 0
    cfg, scale = _kernel_config(qo, p, variants.flags(), scale)
    out = api._empty_like(qo, (*qo.shape[:3], p.dim_v), qo.dtype)
    lse = api._empty_like(qo, qo.shape[:3], "fp32") if return_lse else None
    api.launch_forward(cfg, qo, ko, vo, p, scale, out, lse)
    out, lse = api._result(qo, out), api._result(qo, lse)
    return (out, lse) if return_lse else out


def _kernel_config(qo, p: Problem, flags: dict, scale) -> tuple:
    """(the forward config of (dtype, head_dim, causal, flags), tuned or default; the checked scale). V's own head dim
    is a key field where it differs (as attention() keys it)."""
    scale = check_scale(scale, p.head_dim, "softmax_scale")
    flags = {**flags, "head_dim_v": p.head_dim_v} if p.head_dim_v else flags
    arch, device_name = device_arch(qo.device)
    return api.choose_config(arch, device_name, qo.dtype, p.head_dim, p.causal, p.seq_k, flags), scale


def _refuse_grad(qo, *tensors) -> None:
    if qo.kind == "torch" and api._needs_grad(*tensors):
        raise InputError("prepare_varlen / attention_with_seqused_k have no backward (attention_varlen has one); "
                         "call them under torch.no_grad() or torch.inference_mode()")


def _as_one_batch(t):
    """A packed (total, H, D) operand seen as the (1, H, total, D) batch check_inputs takes."""
    n, h, d = t.shape
    sn, sh, sd = t.strides
    return dataclasses.replace(t, shape=(1, h, n, d), strides=(0, sh, sn, sd))
