"""Split-KV decode: attention of the last Nq (1 to ~16) query tokens of each sequence over its
KV cache, with per-sequence cache lengths, GQA packing and a split count fixed by shapes.

Problem key: (dtype, head_dim, m_tiles, paged, window, softcap, sinks, alibi); m_tiles is 1 when the packed rows G * Nq (query
heads per KV head x query tokens) fit one 16-row mma tile, else 2; paged: K/V read through a
block table (timed on 16-key pages, vLLM's size and the most look-ups; served only on the grid it was
timed on, else a paged cache gets the contiguous key's config: serve/decode._paged_config); the variant flags (issue 17)
are timed on the common values (VARIANT_VALUES: window 4096, softcap 30). Bucket: the cache length.
Metric: GB/s, the bytes of Q, K, V and O over the time (decode is memory-bound).
Template: flash_decode_mma (mma.sync + cp.async, sm_80+). The user-facing calls live in the
serving layer: decode_attention (autoflash/serve/decode.py), autoflash.attention_with_kvcache
and autoflash.attention's decode route.
"""
from __future__ import annotations

import math

from autoflash.kernels.archs import build_arch
from autoflash.kernels.arrays import random_normal
from autoflash.kernels.registry import register_operation
from autoflash.ops import decode_launch
from autoflash.ops.base import Operation
from autoflash.ops.decode_kernels import MMA, VARIANT_FLAGS, DecodeConfig
from autoflash.ops.decode_launch import DecodeProblem

TOKENS = 1 << 21  # batch * KV heads * cache length of a timed problem: 1 GB of K/V at D 128
# Packed-row shapes (query heads per KV head, query tokens) per key's m_tiles: what a
# candidate is timed on, and the odd ones it must also get right.
TIMED_GROUP = {1: (4, 1), 2: (32, 1)}
CHECK_GROUPS = {1: ((4, 1), (8, 2), (1, 5)), 2: ((32, 1), (4, 5))}
TIMED_PAGE = 16              # page size a paged key is timed on
CHECK_PAGES = (16, 48, 256)  # page sizes a paged candidate must get right (48: not a power of two)
# A variant key's problem values: timed (window 4096, causal: Mistral's and gpt-oss's shape; softcap 30:
# Gemma 2's attention), and checked (window 200: shorter than the check caches, so windows start mid-cache).
VARIANT_VALUES = {"window": dict(window_left=4096, window_right=0), "softcap": dict(softcap=30.0),
                  "sinks": dict(sinks=True), "alibi": dict(alibi=True)}
CHECK_WINDOW = dict(window_left=200, window_right=0)


class DecodeOp(Operation):
    name = "decode"
    config_class = DecodeConfig
    templates = (MMA,)
    key_fields = ("head_dim", "m_tiles", "paged") + VARIANT_FLAGS
    key_defaults = {"paged": (False,), **{f: (False,) for f in VARIANT_FLAGS}}
    bucket_name = "cache length"
    default_buckets = (1024, 8192, 65536)
    metric = "gbps"
    default_tokens = TOKENS

    def describe_key(self, key: dict) -> str:
        rows = "<=16" if key["m_tiles"] == 1 else ">16"
        flags = "".join(f" {f}" for f in ("paged",) + VARIANT_FLAGS if key.get(f))
        return f"{key['dtype']} d{key['head_dim']} rows{rows}" + flags

    def bench_problem(self, key: dict, bucket: int, tokens: int) -> dict:
        """Eight KV heads (one when even a single sequence would overfill `tokens`), as many
        full-length sequences as fill `tokens` KV tokens."""
        group, seq_q = TIMED_GROUP[key["m_tiles"]]
        heads_kv = 8 if tokens >= 8 * bucket else 1
        batch = max(1, tokens // (heads_kv * bucket))
        return _variants(_paged(dict(batch=batch, heads_q=group * heads_kv, heads_kv=heads_kv, seq_q=seq_q,
                                     seq_k=bucket, head_dim=key["head_dim"], causal=True), key, TIMED_PAGE), key)

    def check_problems(self, key: dict) -> list[dict]:
        """Odd cache lengths (partial tiles, several splits), several packed-row shapes, causal
        with Nq > 1 (bottom-right); run_checked adds per-sequence lengths 0 and 1."""
        out = []
        for (group, seq_q), (batch, seq_k), page in zip(CHECK_GROUPS[key["m_tiles"]], ((4, 1000), (3, 77), (1, 5003)),
                                                        CHECK_PAGES):
            out.append(_variants(_paged(dict(batch=batch, heads_q=2 * group, heads_kv=2, seq_q=seq_q, seq_k=seq_k,
                                             head_dim=key["head_dim"], causal=True), key, page), key, CHECK_WINDOW))
        return out

    def verify_problems(self, key: dict, bucket: int) -> list[dict]:
        group, seq_q = TIMED_GROUP[key["m_tiles"]]
        return [_variants(_paged(dict(batch=3, heads_q=2 * group, heads_kv=2, seq_q=seq_q, seq_k=n,
                                      head_dim=key["head_dim"], causal=True), key, TIMED_PAGE), key)
                for n in (bucket, bucket // 2 + 1)]

    def work(self, problem: dict) -> float:
        return float(DecodeProblem(**problem).bytes_moved(problem.get("dtype", "bf16")))

    def entry_problem(self, problem: dict) -> dict:
        out = {"batch": problem["batch"], "heads_kv": problem["heads_kv"], "group": problem["heads_q"]
               // problem["heads_kv"], "seq_q": problem["seq_q"], "seq_k": problem["seq_k"]}
        return out | ({"page_size": problem["page_size"]} if problem.get("page_size") else {})

    def default(self, arch: str, key: dict) -> DecodeConfig:
        use_arch = build_arch(MMA.archs, arch)
        if use_arch is None or not MMA.supports(use_arch, key):
            raise ValueError(f"no decode template supports {key} on {arch} (flash_decode_mma: archs "
                             f"{list(MMA.archs)}, dtypes {list(MMA.dtypes)}, head dims {list(MMA.key_values['head_dim'])})")
        return MMA.default(use_arch, key)

    # ------------------------------------------------------------- GPU side
    def verify(self, kernel, problem: dict, seed: int):
        return decode_launch.run_checked(kernel, DecodeProblem(**problem), seed)

    def input_bytes(self, problem: dict, dtype: str) -> int:
        return DecodeProblem(**problem).bytes_moved(dtype)

    def make_inputs(self, problem: dict, dtype: str, seed: int):
        """q, k, v (bshd, random; paged: (num_pages, page_size, Hkv, D) with a shuffled block
        table), o and lse; the workspace comes with the launcher (its size depends on the
        kernel's split count)."""
        import cupy

        p = DecodeProblem(**problem)
        rng = cupy.random.default_rng(seed)
        kv_shape = (p.num_pages, p.page_size, p.heads_kv, p.head_dim) if p.page_size else (
            p.batch, p.seq_k, p.heads_kv, p.head_dim)
        table = cupy.asarray(decode_launch.shuffled_pages(p.batch, p.max_pages, p.num_pages, seed)) if p.page_size \
            else None
        sinks, alibi = decode_launch.variant_arrays(p, seed)
        return dict(q=random_normal(rng, (p.batch, p.seq_q, p.heads_q, p.head_dim), dtype),
                    k=random_normal(rng, kv_shape, dtype), v=random_normal(rng, kv_shape, dtype),
                    o=cupy.empty((p.batch, p.seq_q, p.heads_q, p.head_dim), dtype=cupy.uint16),
                    lse=cupy.empty((p.batch, p.heads_q, p.seq_q), dtype=cupy.float32), block_table=table,
                    sinks=sinks, alibi_slopes=alibi)

    def launcher(self, kernel, problem: dict, inputs):
        import cupy

        p = DecodeProblem(**problem)
        splits = decode_launch.choose_splits(kernel, p)
        n_o, n_l = decode_launch.workspace_sizes(p, splits)
        o_part, lse_part = cupy.empty(max(n_o, 1), cupy.float32), cupy.empty(max(n_l, 1), cupy.float32)
        strides = decode_launch.contiguous_strides(p, "bshd", "bshd")
        if p.page_size:  # the caches' batch stride is the page stride
            page_stride = p.page_size * p.heads_kv * p.head_dim
            strides = strides[:3] + (page_stride,) + strides[4:6] + (page_stride,) + strides[7:]
        plan = decode_launch.plan_for(kernel, p, strides, splits, 1.0 / math.sqrt(p.head_dim), p.max_pages)
        ptrs = tuple(inputs[n].data.ptr for n in ("q", "k", "v", "o", "lse")) + (
            o_part.data.ptr if n_o else 0, lse_part.data.ptr if n_l else 0, 0)
        table = inputs["block_table"].data.ptr if p.page_size else 0
        sinks, alibi = (inputs.get(n) for n in ("sinks", "alibi_slopes"))
        variant_ptrs = (sinks.data.ptr if sinks is not None else 0, alibi.data.ptr if alibi is not None else 0)

        def launch():
            plan(*ptrs, cupy.cuda.get_current_stream(), table, *variant_ptrs)

        launch.workspace = (o_part, lse_part)  # kept alive with the launcher
        return launch


def _paged(problem: dict, key: dict, page_size: int) -> dict:
    """A paged key's problem: the cache rounded up to whole pages, as many pages as the batch uses
    plus one no table names."""
    if not key.get("paged"):
        return problem
    max_pages = -(-problem["seq_k"] // page_size)
    return problem | dict(seq_k=max_pages * page_size, page_size=page_size,
                          num_pages=problem["batch"] * max_pages + 1)


def _variants(problem: dict, key: dict, window: dict | None = None) -> dict:
    """A variant key's problem: the values of VARIANT_VALUES (window: `window` if given) for its flags."""
    out = dict(problem)
    for flag in VARIANT_FLAGS:
        if key.get(flag):
            out |= window if flag == "window" and window else VARIANT_VALUES[flag]
    return out


DECODE = DecodeOp()
register_operation(DECODE)
__all__ = ["DECODE", "DecodeConfig", "DecodeOp", "DecodeProblem"]
