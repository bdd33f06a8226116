"""autoflash.attention_with_kvcache(): attention of new query tokens over a KV cache, in
flash-attn's argument names and layout (flash_attn_with_kvcache). Up to 16 query tokens: the
split-KV decode kernel (serve/decode.py), contiguous or paged caches. Longer chunks (chunked
prefill) on a contiguous cache: the dense forward with per-sequence used keys
(serve/varlen.attention_with_seqused_k), bottom-right; on a paged cache: the forward compiled
with paged (K/V read through the block table: flash_fwd_wgmma on sm_90, flash_fwd_mma elsewhere), the
block table and lengths checked by decode's own checks. Not served yet: appending new keys into the cache."""
from __future__ import annotations

import dataclasses
import functools

from autoflash.kernels.archs import build_arch
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.ops.decode_launch import DecodeProblem
from autoflash.ops.forward_base import BOTTOM_RIGHT_PER_SEQUENCE, KernelConfig
from autoflash.ops.forward_launch import LaunchPlan
from autoflash.ops.forward_mma import MMA
from autoflash.ops.forward_wgmma import WGMMA
from autoflash.serve import api
from autoflash.serve.decode import _check_seqlens, _check_table, _check_table_entries, _on_device, decode_attention
from autoflash.serve.errors import InputError
from autoflash.serve.operands import check_scale
from autoflash.serve.routing import kvcache_route
from autoflash.serve.variants import check_variants
from autoflash.serve.varlen import attention_with_seqused_k


def attention_with_kvcache(q, k_cache, v_cache, cache_seqlens=None, *, block_table=None, causal: bool = False,
                           softmax_scale: float | None = None, return_lse: bool = False,
                           num_splits: int | None = None, window_size=(-1, -1), softcap: float | None = 0.0,
                           sinks=None, alibi_slopes=None):
    """softmax(q k^T * softmax_scale) v of the newest query tokens of each sequence over its cache.

    q: (batch, seqlen_q, heads_q, head_dim). seqlen_q 1..16 (decode, speculative decoding): the
      split-KV decode kernel. seqlen_q > 16 (chunked prefill), and v's head dim differing from q/k's
      (routing.kvcache_route): the dense forward kernel, reading q and the caches in place
      as (B, H, N, D) views (num_splits does not apply); on a paged
      cache the forward compiled to read K/V through the block table (flash_fwd_wgmma on sm_90,
      flash_fwd_mma on sm_80-89; float16 or bfloat16, head_dim any multiple of 8 up to 256; CUDA
      graph capture allowed, with the kernel's guards below).
    k_cache, v_cache: (batch, seqlen_k, heads_kv, head_dim), heads_q a multiple of heads_kv
      (query head j reads KV head j // (heads_q / heads_kv)). Only this layout (flash-attn's) is
      taken: (B, N, H, D) and (B, H, N, D) cannot be told apart by shape. A cache stored as
      (B, H, N, D) is passed as k_cache.transpose(1, 2): any strides with head_dim contiguous
      (strides multiples of 8 elements, 16-byte aligned data) are read in place, never copied.
      With block_table: a paged cache, k_cache and v_cache (num_pages, page_size, heads_kv,
      head_dim), page_size a multiple of 16 (vLLM's 16, 32, 64, ..., 256; 48 works too; other
      sizes are refused).
    PyTorch CUDA tensors, float16 or bfloat16; head_dim any multiple of 8 up to 256.
    cache_seqlens: int32 tensor (batch,), the valid length L of each sequence's cache (0..seqlen_k;
      None: every sequence is seqlen_k long). Keys at positions >= L are never read. Checked on
      the host before the launch, except while a CUDA graph is being captured (no host copy is
      possible then; the kernel clamps to [0, seqlen_k]).
    block_table: int32 CUDA tensor (batch, max_pages) on the caches' device: row b lists the pages
      of sequence b in key order (key j lives in page block_table[b, j // page_size], row
      j % page_size); seqlen_k is max_pages * page_size. Pages may be shared between sequences
      and need not be in order. Checked before launch: every entry a sequence uses (the first
      ceil(L / page_size) of its row) must be in [0, num_pages); the table is copied to the host
      for that (a small synchronous copy). During CUDA graph capture nothing can be copied, so
      the values are not checked: the kernel then reads page 0 for an out-of-range entry and
      clamps lengths to the capacity, so it never reads outside the caches (a bad table gives
      wrong values, never a wild read). Entries past a sequence's pages are never read.
    causal: bottom-right aligned (flash-attn's convention): the queries are the last seqlen_q
      positions of the sequence, so query i sees keys 0 .. i + L - seqlen_q. Without causal
      every query sees keys 0 .. L - 1. A query that sees no key (L = 0, or causal with
      i + L < seqlen_q) gives output 0 and LSE -inf.
    softmax_scale: default 1/sqrt(head_dim); any finite number.
    window_size=(left, right), softcap, alibi_slopes: flash-attn's names and meaning, measured from
      the query's diagonal key i + L - seqlen_q (bottom-right): query i sees keys diag - left ..
      diag + right (-1 = unbounded; causal forces right = 0); softcap 0.0 or None = none (flash-attn's
      default 0.0), else > 0; alibi_slopes float32 (heads_q,) or (batch, heads_q) on q's device.
      sinks: float32 (heads_q,) on q's device, one logit per query head joining only the softmax
      denominator (gpt-oss); the LSE includes it. Checked as autoflash.attention() checks them
      (serve/variants.py). Decode with a window reads only the keys the window covers.
    return_lse: also return the log-sum-exp, float32 (batch, heads_q, seqlen_q), natural log.
    num_splits: how many blocks share one sequence's keys (1..256); None or 0 (flash-attn's
      "auto"): a heuristic of the shapes only, never of the cache_seqlens values, so a CUDA graph
      captured once replays correctly with new lengths.

    Returns out (batch, seqlen_q, heads_q, head_dim), q's dtype, on the current stream: contiguous
    from decode; from a chunked prefill a (batch, seqlen_q, heads, head_dim) view of a contiguous
    (batch, heads, seqlen_q, head_dim) tensor (call .contiguous() if a packed copy is needed).
    With return_lse, (out, lse). Bad input raises ValueError before anything launches.
    """
    _check_queries(q)
    if type(softcap) in (int, float) and softcap == 0:
        softcap = None  # flash-attn spells "no softcap" as 0.0
    variants = dict(window_size=window_size, softcap=softcap, sinks=sinks, alibi_slopes=alibi_slopes)
    dim_v = v_cache.shape[-1] if len(getattr(v_cache, "shape", ())) == 4 else 0  # else decode's checks say why
    if kvcache_route(q.shape[1], q.shape[3], dim_v).op == "forward":  # > 16 tokens, or Dv != Dqk
        return _chunked_prefill(q, k_cache, v_cache, cache_seqlens, block_table, causal, softmax_scale, return_lse,
                                variants)
    if num_splits == 0 and type(num_splits) is int:
        num_splits = None  # flash-attn spells "choose for me" as 0
    return decode_attention(q, k_cache, v_cache, cache_seqlens, block_table=block_table, causal=causal,
                            softmax_scale=softmax_scale, return_lse=return_lse, num_splits=num_splits,
                            layout="bshd", **variants)


def _chunked_prefill(q, k_cache, v_cache, cache_seqlens, block_table, causal, softmax_scale, return_lse, variants):
    """seqlen_q > 16, or what decode lacks (routing.kvcache_route): the dense forward over (B, H, N, D)
    views of the caller's tensors, bottom-right; each sequence uses its first cache_seqlens[b] keys (paged:
    _paged_prefill)."""
    for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not type(x).__module__.startswith("torch") or len(getattr(x, "shape", ())) != 4:
            raise InputError(f"{name} must be a 4-D PyTorch tensor (batch, seqlen_k, heads_kv, head_dim)")
    if block_table is not None:
        return _paged_prefill(q, k_cache, v_cache, cache_seqlens, block_table, causal, softmax_scale, return_lse,
                              variants)
    views = (q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2))
    if cache_seqlens is None:  # every sequence fills the cache
        res = api.attention(*views, causal=causal, causal_alignment="bottom_right", scale=softmax_scale,
                            return_lse=return_lse, **variants)
    else:
        res = attention_with_seqused_k(*views, cache_seqlens, causal=causal, causal_alignment="bottom_right",
                                       scale=softmax_scale, return_lse=return_lse, **variants)
    out, lse = res if return_lse else (res, None)
    out = out.transpose(1, 2)  # back to q's (batch, seqlen_q, heads, head_dim), a view
    return (out, lse) if return_lse else out


def _check_queries(q) -> None:
    """q is a 4-D torch tensor with at least one query token (the rest: decode_attention's checks,
    or the forward's for a chunked prefill)."""
    if not type(q).__module__.startswith("torch") or not hasattr(q, "shape"):
        raise InputError(f"q is a {type(q).__name__}; attention_with_kvcache takes PyTorch CUDA tensors")
    if len(q.shape) != 4:
        raise InputError(f"q has shape {tuple(q.shape)}; attention_with_kvcache takes q as (batch, seqlen_q, "
                         "heads_q, head_dim)")
    if q.shape[1] < 1:  # 1..16: decode; longer: the chunked-prefill path
        raise InputError(f"q has seqlen_q = {q.shape[1]}; attention_with_kvcache needs at least one query token")


def _paged_prefill(q, k_cache, v_cache, cache_seqlens, block_table, causal, softmax_scale, return_lse, variants):
    """_chunked_prefill's work on a paged cache: paged_config's kernel (wgmma or mma) with paged set, one launch, no
    copies. The block table and cache_seqlens pass decode's checks (serve/decode.py: type, shape, device, page
    size a multiple of 16, lengths in [0, capacity], every used entry a page of the cache; the values
    are skipped during CUDA graph capture, where the kernel clamps lengths and reads page 0 for a bad
    entry). The rest: attention()'s checks on (B, H, N, D) views, the caches seen as (B, Hkv,
    capacity, D) with their page strides as batch strides."""
    if type(causal) is not bool:
        raise InputError(f"causal must be True or False, got {causal!r}")
    if any(getattr(t, "requires_grad", False) for t in (q, k_cache, v_cache)):
        import torch

        if torch.is_grad_enabled():
            raise InputError("chunked prefill on a paged cache has no backward; call it under torch.no_grad()")
    if tuple(k_cache.shape) != tuple(v_cache.shape):
        raise InputError(f"k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} differ in shape")
    batch, seq_q, heads_q, head_dim = q.shape
    num_pages, page_size, heads_kv, _ = k_cache.shape
    _check_table(block_table, batch, num_pages, page_size, k_cache.device)
    capacity = block_table.shape[1] * page_size  # the keys a table row addresses
    qo = api.as_operand(q.transpose(1, 2), "q")
    ko, vo = (api.as_operand(x.transpose(1, 2), n) for x, n in ((k_cache, "k_cache"), (v_cache, "v_cache")))
    if qo.dtype not in MMA.dtypes:
        raise InputError(f"q has dtype {qo.dtype}; chunked prefill on a paged cache runs flash_fwd_mma: "
                         "float16 or bfloat16")
    page_strides = (api.kernel_strides(ko), api.kernel_strides(vo))  # (page, head, row) of the real pages
    as_cache = lambda t: dataclasses.replace(t, shape=(batch, heads_kv, capacity, t.shape[3]))  # noqa: E731
    p = api.check_inputs(qo, as_cache(ko), as_cache(vo))
    p.strides = (p.strides[0], *page_strides, p.strides[3])
    seqlens, host = _check_seqlens(cache_seqlens, batch, capacity, q.device)
    table_view = DecodeProblem(batch, heads_q, heads_kv, seq_q, capacity, head_dim, causal, page_size=page_size,
                               num_pages=num_pages)
    _check_table_entries(block_table, seqlens if host is None else host, table_view)
    p.causal = causal
    checked = check_variants(**variants, causal=causal, kind=qo.kind, device=qo.device, batch=batch,
                             heads_q=heads_q).apply(p)
    # the queries are the newest seq_q tokens: each sequence's own diagonal when its length is given
    p.causal_offset = BOTTOM_RIGHT_PER_SEQUENCE if seqlens is not None else capacity - seq_q
    p.seqused_k = seqlens.data_ptr() if seqlens is not None else 0
    p.block_table, p.table_stride = block_table.data_ptr(), block_table.stride(0)
    p.page_size, p.num_pages = page_size, num_pages
    scale = check_scale(softmax_scale, head_dim, "softmax_scale")
    arch, device_name = device_arch(qo.device)
    if build_arch(MMA.archs, arch) is None:
        raise InputError(f"chunked prefill on a paged cache runs flash_fwd_mma, which needs {list(MMA.archs)}; "
                         f"this GPU is {arch}")
    cfg = paged_config(arch, device_name, qo.dtype, head_dim, causal, tuple(checked.flags().items()), capacity)
    out = api._empty_like(qo, qo.shape, qo.dtype)
    lse = api._empty_like(qo, qo.shape[:3], "fp32") if return_lse else None
    kernel = api.loaded_kernel(cfg, qo.device)
    args = (qo.ptr, ko.ptr, vo.ptr, api._pointer(out), api._pointer(lse) if lse is not None else 0, api._stream(qo))
    # the plan holds the table and lengths pointers: they are part of its key
    key = ("paged",) + p.fields() + (float(scale),)
    with _on_device(qo.device):
        kernel.cached_plan(key, lambda: LaunchPlan(kernel, p, float(scale)))(*args)
    out = out.transpose(1, 2)  # (batch, seqlen_q, heads, head_dim), a view
    return (out, lse) if return_lse else out


@functools.lru_cache(maxsize=256)
def paged_config(arch: str, device_name: str, dtype: str, head_dim: int, causal: bool, flags: tuple,
                 seq_k: int) -> KernelConfig:
    """The paged forward config of a problem: its unpaged key's tuned (or default) config with
    paged set when that is a flash_fwd_wgmma or flash_fwd_mma config, else flash_fwd_wgmma's (sm_90)
    then flash_fwd_mma's defaults for the key (simt has no paged loads); the first of these whose ptxas report shows no
    register spill (the page lookups add a few registers to kernels that run at 240-255: the
    all-variants d128 default spills when paged). Cached per process, as decode's paged configs."""
    key = dict(dtype=dtype, head_dim=head_dim, causal=causal, **dict(flags))
    chosen = api.choose_config(arch, device_name, dtype, head_dim, causal, seq_k, dict(flags))
    # (template, the arch it builds for) of the templates with paged loads here: sm_90 tries wgmma's first
    templates = [(t, use) for t in (WGMMA, MMA) if (use := build_arch(t.archs, arch))]
    candidates = [chosen] if chosen.template in [t.name for t, _ in templates] else []
    candidates += [t.config(use, key, **knobs) for t, use in templates for knobs in t.default_tiles(key)]
    valid = [c for c in (c.replace(paged=True) for c in candidates) if not c.problems()]
    if not valid:
        raise InputError(f"chunked prefill on a paged cache: no paged forward config for {dtype} d{head_dim} "
                         f"on {arch}")
    return next((c for c in valid if compile_kernel(c).report.spills == 0), valid[0])
