"""autoflash.attention_with_kvcache(): attention of new query tokens over a KV cache, in
flash-attn's argument names and layout (flash_attn_with_kvcache). Up to 16 query tokens: the
split-KV decode kernel (serve/decode.py), contiguous or paged caches. Longer chunks (chunked
prefill) on a contiguous cache: the dense forward with per-sequence used keys
(serve/varlen.attention_with_seqused_k), bottom-right. Not served yet: chunked prefill on a paged
cache, and appending new keys into the cache."""
from __future__ import annotations

from autoflash.serve import api
from autoflash.serve.decode import decode_attention
from autoflash.serve.errors import InputError
from autoflash.serve.routing import DECODE_MAX_QUERIES
from autoflash.serve.varlen import attention_with_seqused_k


def attention_with_kvcache(q, k_cache, v_cache, cache_seqlens=None, *, block_table=None, causal: bool = False,
                           softmax_scale: float | None = None, return_lse: bool = False,
                           num_splits: int | None = None, window_size=(-1, -1), softcap: float | None = 0.0,
                           sinks=None, alibi_slopes=None):
    """softmax(q k^T * softmax_scale) v of the newest query tokens of each sequence over its cache.

    q: (batch, seqlen_q, heads_q, head_dim). seqlen_q 1..16 (decode, speculative decoding): the
      split-KV decode kernel. seqlen_q > 16 (chunked prefill): the dense forward kernel, reading
      q and the caches in place as (B, H, N, D) views; contiguous caches only (a block_table is
      refused there), and num_splits does not apply.
    k_cache, v_cache: (batch, seqlen_k, heads_kv, head_dim), heads_q a multiple of heads_kv
      (query head j reads KV head j // (heads_q / heads_kv)). Only this layout (flash-attn's) is
      taken: (B, N, H, D) and (B, H, N, D) cannot be told apart by shape. A cache stored as
      (B, H, N, D) is passed as k_cache.transpose(1, 2): any strides with head_dim contiguous
      (strides multiples of 8 elements, 16-byte aligned data) are read in place, never copied.
      With block_table: a paged cache, k_cache and v_cache (num_pages, page_size, heads_kv,
      head_dim), page_size a multiple of 16 (vLLM's 16, 32, 64, ..., 256; 48 works too; other
      sizes are refused).
    PyTorch CUDA tensors, float16 or bfloat16; head_dim 16, 32, 64, 128 or 256.
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
    if q.shape[1] > DECODE_MAX_QUERIES:
        return _chunked_prefill(q, k_cache, v_cache, cache_seqlens, block_table, causal, softmax_scale, return_lse,
                                variants)
    if num_splits == 0 and type(num_splits) is int:
        num_splits = None  # flash-attn spells "choose for me" as 0
    return decode_attention(q, k_cache, v_cache, cache_seqlens, block_table=block_table, causal=causal,
                            softmax_scale=softmax_scale, return_lse=return_lse, num_splits=num_splits,
                            layout="bshd", **variants)


def _chunked_prefill(q, k_cache, v_cache, cache_seqlens, block_table, causal, softmax_scale, return_lse, variants):
    """seqlen_q > 16 on a contiguous cache: the dense forward over (B, H, N, D) views of the
    caller's tensors, bottom-right; each sequence uses its first cache_seqlens[b] keys."""
    if block_table is not None:
        raise InputError(f"attention_with_kvcache serves a paged cache (block_table) for 1..{DECODE_MAX_QUERIES} query "
                         f"tokens; got seqlen_q = {q.shape[1]}. Chunked prefill on a paged cache is not served yet: "
                         "pass a contiguous (batch, seqlen_k, heads_kv, head_dim) cache, or chunks of at most "
                         f"{DECODE_MAX_QUERIES} tokens")
    for name, x in (("k_cache", k_cache), ("v_cache", v_cache)):
        if not type(x).__module__.startswith("torch") or len(getattr(x, "shape", ())) != 4:
            raise InputError(f"{name} must be a 4-D PyTorch tensor (batch, seqlen_k, heads_kv, head_dim)")
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
