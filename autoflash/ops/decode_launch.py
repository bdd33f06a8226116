"""GPU side of split-KV decode: problem sizes, launch plans (grid, arguments, workspace), the
float64 reference and the checked run. CuPy is imported where used.

Layouts: queries and output (B, Nq, Hq, D) or (B, Hq, Nq, D); caches (B, Nk, Hkv, D) or
(B, Hkv, Nk, D); any strides with D contiguous reach the kernel as element strides
(batch, token, head). LSE is (B, Hq, Nq), fp32, natural log. Paged caches (page_size > 0) are
(num_pages, page_size, Hkv, D) with a (B, max_pages) int32 block table; their "batch" stride is
the page stride and Nk = max_pages * page_size (the capacity a table row addresses).
Variants (issue 17): window bounds and softcap are problem values (fixed in a plan); the sinks and
ALiBi slopes are device arrays whose pointers come with each call (DecodePlan.__call__).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoflash.kernels.arrays import poisoned, random_normal, to_float64
from autoflash.kernels.device import sm_count  # (tests and serve/decode.py read it here)
from autoflash.kernels.elements import DTYPE_BYTES, LOG2E
from autoflash.kernels.loaded import rendered
from autoflash.kernels.packed_sequence import PackedSequence, Slot
from autoflash.ops.decode_kernels import (FUSED_MAX_SPLITS, LANES_MAX_SPLITS, LANES_MIN_SPLIT_KEYS, DecodeConfig,
                                         combine_kernel, lanes_combine, m_blocks, min_split_keys, pdl_combine,
                                         split_heuristic)
from autoflash.ops.reference import Check, array_module, compare, slopes_per_batch, visible_keys


@dataclass(frozen=True)
class DecodeProblem:
    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int      # query tokens per sequence (the last seq_q positions)
    seq_k: int      # cache capacity Nk (per-sequence lengths may be shorter); paged: max_pages * page_size
    head_dim: int
    causal: bool
    page_size: int = 0  # 0: contiguous caches; else keys per page of a paged cache (a multiple of 16)
    num_pages: int = 0  # pages in the paged cache (the kernel never reads a page outside 0..num_pages-1)
    # Variants (the forward's semantics, diagonal of query i = L - Nq + i): window bounds (-1 = unbounded;
    # with causal the host passes right = 0), softcap (0 = none), whether sinks (Hq,) and ALiBi slopes
    # ((Hq,), or (B, Hq) with alibi_per_batch) come with the call.
    window_left: int = -1
    window_right: int = -1
    softcap: float = 0.0
    sinks: bool = False
    alibi: bool = False
    alibi_per_batch: bool = False

    def variant_flags(self) -> dict:
        """The DecodeConfig variant flags a kernel for this problem must have."""
        return {"window": self.window_left >= 0 or self.window_right >= 0, "softcap": self.softcap > 0,
                "sinks": self.sinks, "alibi": self.alibi}

    @property
    def key_span(self) -> int:
        """Keys one sequence's splits share at most: the cache, or (window) the last Nq + window_left
        positions (+15: the kernel starts at a multiple of 16)."""
        if self.window_left < 0:
            return self.seq_k
        return min(self.seq_k, self.window_left + self.seq_q + 15)

    @property
    def max_pages(self) -> int:
        return self.seq_k // self.page_size if self.page_size else 0

    @property
    def group(self) -> int:
        return self.heads_q // self.heads_kv

    @property
    def rows(self) -> int:
        """Packed query rows per (batch, KV head): G heads x Nq tokens."""
        return self.group * self.seq_q

    def split_blocks(self, m_tiles: int) -> int:
        """Blocks of one split (the work the split heuristic spreads): batch x KV heads x m-blocks of the rows."""
        return self.batch * self.heads_kv * m_blocks(self.rows, m_tiles)

    def bytes_moved(self, dtype: str, kv_tokens: int | None = None) -> int:
        """The floor: Q and O once, K and V once per KV head (kv_tokens: the sum of the
        sequence lengths, default every sequence full; a window: the keys it covers)."""
        tokens = self.batch * self.key_span if kv_tokens is None else kv_tokens
        qo = 2 * self.batch * self.heads_q * self.seq_q * self.head_dim
        return DTYPE_BYTES[dtype] * (qo + 2 * tokens * self.heads_kv * self.head_dim)


def choose_splits(kernel, p: DecodeProblem, requested: int | None = None) -> int:
    """The caller's count, else the config's fixed one, else the wave-efficiency heuristic over
    this GPU's SMs. Shapes only: the same at graph capture and replay."""
    return requested or config_splits(kernel.config, p, sm_count(kernel.device_id))


def config_splits(cfg: DecodeConfig, p: DecodeProblem, slots: int) -> int:
    """The config's fixed split count, else the heuristic's over `slots` SMs."""
    if cfg.num_splits:
        return cfg.num_splits
    work = p.split_blocks(cfg.m_tiles)
    n_steps, min_steps = math.ceil(p.key_span / cfg.step_keys), math.ceil(min_split_keys(work, slots) / cfg.step_keys)
    splits = split_heuristic(work, n_steps, slots, min_steps=min_steps)
    if lanes_combine(cfg) and splits > LANES_MAX_SPLITS and p.key_span < LANES_MIN_SPLIT_KEYS * splits:
        # more splits than _combine_lanes merges, each short: the heuristic's best within its range instead
        splits = split_heuristic(work, n_steps, slots, max_splits=LANES_MAX_SPLITS, min_steps=min_steps)
    return splits


def workspace_sizes(p: DecodeProblem, num_splits: int) -> tuple[int, int]:
    """(partial O floats, partial LSE floats); (0, 0) with one split (the split kernel writes O)."""
    if num_splits <= 1:
        return 0, 0
    rows = num_splits * p.batch * p.heads_kv * p.rows
    return rows * p.head_dim, rows


def contiguous_strides(p: DecodeProblem, q_layout: str, kv_layout: str) -> tuple[int, ...]:
    """(q, k, v, o) element strides (batch, token, head) of contiguous arrays in these layouts."""
    def three(tokens: int, heads: int, layout: str) -> tuple[int, int, int]:
        d = p.head_dim
        if layout == "bshd":
            return tokens * heads * d, heads * d, d
        return heads * tokens * d, d, tokens * d

    q = three(p.seq_q, p.heads_q, q_layout)
    kv = three(p.seq_k, p.heads_kv, kv_layout)
    return q + kv + kv + q


class DecodePlan:
    """One problem's launches with everything but the pointers converted beforehand."""

    __slots__ = ("split_fn", "combine_fn", "grid", "block", "smem", "tail", "num_splits", "combine_grid",
                 "combine_block", "combine_tail", "counters", "fused", "paged_tail", "variant_head", "variant_end",
                 "programmatic_combine")

    def __init__(self, kernel, p: DecodeProblem, strides: tuple[int, ...], num_splits: int, scale: float,
                 table_stride: int = 0):
        cfg: DecodeConfig = kernel.config
        if p.head_dim != cfg.head_dim:
            raise ValueError(f"kernel {cfg.name} is built for head_dim {cfg.head_dim}, not {p.head_dim}")
        if cfg.paged != bool(p.page_size):
            raise ValueError(f"kernel {cfg.name} is {'' if cfg.paged else 'not '}paged, the problem has "
                             f"page_size {p.page_size}")
        flags = {f: getattr(cfg, f) for f in p.variant_flags()}
        if flags != p.variant_flags():
            raise ValueError(f"kernel {cfg.name} has variant flags {flags}, the problem needs {p.variant_flags()}")
        combine_name, combine_threads = combine_kernel(cfg, num_splits)
        self.split_fn, self.combine_fn = kernel.function, kernel.function_named(combine_name)
        self.num_splits = num_splits
        self.grid = (num_splits, m_blocks(p.rows, cfg.m_tiles), p.batch * p.heads_kv)
        if self.grid[1] > 65535 or self.grid[2] > 65535:
            raise ValueError(f"grid {self.grid} exceeds CUDA's 65535 limit on y/z (batch * heads_kv = "
                             f"{p.batch * p.heads_kv}, packed rows {p.rows})")
        self.block = (cfg.threads, 1, 1)
        self.smem = kernel.smem
        i32, i64 = np.int32, np.int64
        self.tail = tuple(i64(s) for s in strides) + (
            i32(p.seq_k), i32(p.seq_q), i32(p.group), i32(p.heads_kv), i32(int(p.causal)),
            np.float32(scale * LOG2E))
        self.paged_tail = (i64(table_stride), i32(p.page_size), i32(p.num_pages))  # after the table pointer
        # The variant tail: window bounds and softcap, then (per call) the sinks and slopes pointers,
        # then the slopes' batch stride (0: per-head slopes shared by the batch).
        self.variant_head = (i32(p.window_left), i32(p.window_right), np.float32(p.softcap))
        self.variant_end = (i32(p.heads_q if p.alibi_per_batch else 0),)
        total_rows = p.batch * p.heads_kv * p.rows
        self.combine_grid = (total_rows, 1, 1)  # a block per packed row (combine_kernel: its block)
        self.combine_block = (combine_threads, 1, 1)
        self.combine_tail = tuple(i64(s) for s in strides[9:12]) + (
            i32(total_rows), i32(p.rows), i32(p.group), i32(p.heads_kv), i32(p.seq_q), i32(num_splits))
        # fused_combine: the last block of each (batch * KV head, m-block) merges; its ticket counters are
        # zeroed here, once, and reset by the kernel after each use (so graph replays find them zero).
        # The plan is cached, so this happens on the first call (outside any graph capture). Two streams
        # running one plan at the same time would share the counters: not supported.
        # (with PDL_COMBINE the separate combine serves: the split kernel then gets no counters and merges nothing)
        pdl = rendered(kernel, "pdl", "true" if pdl_combine(cfg) else "false") == "true"  # as the kernel was built
        self.fused = cfg.fused_combine and 1 < num_splits <= FUSED_MAX_SPLITS and not pdl
        # PDL_COMBINE: the combine goes out as a packed programmatic dependent launch (its arguments' pointers
        # are slots 0-4: o_part, lse_part, o, lse, sinks).
        self.programmatic_combine = None
        if pdl and num_splits > 1:
            args = (Slot(0), Slot(1), Slot(2), Slot(3)) + self.combine_tail + (Slot(4),)
            self.programmatic_combine = PackedSequence(
                [(self.combine_fn, self.combine_grid, self.combine_block, 0, args)], programmatic=True)
        self.counters = None
        if self.fused:
            import cupy

            self.counters = cupy.zeros(self.grid[1] * self.grid[2], dtype=cupy.uint32)
            cupy.cuda.get_current_stream().synchronize()

    def __call__(self, q: int, k: int, v: int, o: int, lse: int, o_part: int, lse_part: int, seqlens: int,
                 stream, block_table: int = 0, sinks: int = 0, alibi_slopes: int = 0) -> None:
        u64 = np.uint64
        counters = self.counters.data.ptr if self.fused else 0
        sinks = u64(sinks)
        self.split_fn(self.grid, self.block,
                      (u64(q), u64(k), u64(v), u64(o), u64(lse), u64(o_part), u64(lse_part), u64(seqlens),
                       u64(counters)) + self.tail + (u64(block_table),) + self.paged_tail + self.variant_head
                      + (sinks, u64(alibi_slopes)) + self.variant_end,
                      shared_mem=self.smem, stream=stream)
        if self.programmatic_combine is not None:
            self.programmatic_combine((o_part, lse_part, o, lse, int(sinks)), stream.ptr)
        elif self.num_splits > 1 and not self.fused:
            self.combine_fn(self.combine_grid, self.combine_block,
                            (u64(o_part), u64(lse_part), u64(o), u64(lse)) + self.combine_tail + (sinks,),
                            stream=stream)


def plan_for(kernel, p: DecodeProblem, strides: tuple[int, ...], num_splits: int, scale: float,
             table_stride: int = 0) -> DecodePlan:
    key = ("decode", p, strides, num_splits, scale, table_stride)
    return kernel.cached_plan(key, lambda: DecodePlan(kernel, p, strides, num_splits, scale, table_stride))


# ------------------------------------------------------------------ paged caches
def shuffled_pages(batch: int, max_pages: int, num_pages: int, seed: int) -> np.ndarray:
    """A (batch, max_pages) int32 block table whose entries are distinct pages of 0..num_pages-1 in
    random order (num_pages >= batch * max_pages)."""
    perm = np.random.default_rng(seed).permutation(num_pages)[:batch * max_pages]
    return perm.reshape(batch, max_pages).astype(np.int32)


def to_pages(x, table, num_pages: int):
    """A contiguous (B, Nk, Hkv, D) cache (NumPy or CuPy) as (num_pages, page_size, Hkv, D) pages
    laid out by `table` (pages no sequence uses hold zeros); Nk = max_pages * page_size."""
    xp = array_module(x)
    b, nk, h, d = x.shape
    max_pages = table.shape[1]
    pages = xp.zeros((num_pages, nk // max_pages, h, d), dtype=x.dtype)
    pages[xp.asarray(table).reshape(-1)] = x.reshape(b * max_pages, nk // max_pages, h, d)
    return pages


def from_pages(pages, table):
    """The contiguous (B, max_pages * page_size, Hkv, D) view of a paged cache through its table."""
    xp = array_module(pages)
    table = xp.asarray(table)
    b, max_pages = table.shape
    _, page_size, h, d = pages.shape
    return pages[table.reshape(-1)].reshape(b, max_pages * page_size, h, d)


# ------------------------------------------------------------------ reference and check
def reference_decode(q, k, v, seqlens, *, causal: bool, scale: float, window=(-1, -1), softcap: float = 0.0,
                     sinks=None, alibi_slopes=None):
    """float64 decode attention (NumPy or CuPy arrays): q (B, Nq, Hq, D), caches (B, Nk, Hkv, D),
    seqlens (B,) ints. Query i of Nq sits at position L - Nq + i, its diagonal key (bottom-right).
    Variants as the forward's (ops/reference.py): window (left, right) around the diagonal (-1 =
    unbounded), softcap (0 = none) before ALiBi, alibi_slopes (Hq,) or (B, Hq): - slope * |diag - j|,
    sinks (Hq,) in the denominator only. A row that sees no key: output 0, LSE -inf (its sink with
    sinks). Returns (out (B, Nq, Hq, Dv), lse (B, Hq, Nq))."""
    xp = array_module(q)
    q, k, v = (xp.asarray(a, dtype=xp.float64) for a in (q, k, v))
    b, nq, hq, d = q.shape
    group = hq // k.shape[2]
    sink = None if sinks is None else xp.asarray(sinks, dtype=xp.float64).reshape(hq, 1, 1)
    slopes = None if alibi_slopes is None else slopes_per_batch(xp, alibi_slopes, b, hq)
    out = xp.zeros((b, nq, hq, v.shape[3]), dtype=xp.float64)  # V's head dim (the forward serves Dv != D)
    lse = xp.full((b, hq, nq), -xp.inf, dtype=xp.float64)
    for i in range(b):
        n = int(seqlens[i])
        if n == 0:
            if sink is not None:
                lse[i] = xp.broadcast_to(sink[:, :, 0], (hq, nq))
            continue
        kk = xp.repeat(k[i, :n], group, axis=1)  # (n, Hq, D): query head j reads KV head j // G
        vv = xp.repeat(v[i, :n], group, axis=1)
        s = xp.einsum("qhd,khd->hqk", q[i], kk) * scale
        if softcap > 0:
            s = softcap * xp.tanh(s / softcap)
        keys, diag = xp.arange(n)[None, :], (n - nq + xp.arange(nq))[:, None]  # (1, n), (Nq, 1)
        if slopes is not None:
            s = s - slopes[i][:, None, None] * xp.abs(diag - keys)[None]
        s = xp.where(visible_keys(diag, keys, causal=causal, window=window)[None], s, -xp.inf)
        m = s.max(axis=-1, keepdims=True)
        if sink is not None:
            m = xp.maximum(m, sink)
        seen = xp.isfinite(m)
        p = xp.where(seen, xp.exp(s - xp.where(seen, m, 0)), 0)
        l = p.sum(axis=-1, keepdims=True)
        if sink is not None:
            l = l + xp.where(seen, xp.exp(sink - xp.where(seen, m, 0)), 0)
        o = xp.einsum("hqk,khd->qhd", p / xp.where(seen, l, 1), vv)
        out[i] = o
        lse[i] = xp.where(seen, m + xp.log(xp.where(seen, l, 1)), -xp.inf)[..., 0]
    return out, lse


def variant_arrays(p: DecodeProblem, seed: int):
    """Seeded sinks (Hq,) and ALiBi slopes ((Hq,) or (B, Hq)) as float32 CuPy arrays for a problem
    that has them (else None): sinks spread over [-3, 3] with the first head -inf (no sink) and the
    last +8 (above most rows' logits); slopes geometric as ALiBi's, 2^(-8 (h+1) / Hq)."""
    import cupy

    sinks = alibi = None
    if p.sinks:
        x = np.random.default_rng(seed + 1).uniform(-3, 3, p.heads_q)
        x[0] = -np.inf
        if p.heads_q > 1:
            x[-1] = 8.0
        sinks = cupy.asarray(x.astype(np.float32))
    if p.alibi:
        x = 2.0 ** (-8.0 * (np.arange(p.heads_q) + 1) / p.heads_q)
        if p.alibi_per_batch:
            x = x[None, :] * np.random.default_rng(seed + 2).uniform(0.5, 1.5, (p.batch, 1))
        alibi = cupy.asarray(x.astype(np.float32))
    return sinks, alibi


def check_output(out, ref, lse, ref_lse, dtype: str):
    """ops.reference.compare, after checking that LSE is -inf exactly where the reference's is
    (rows that see no key), which compare would count as non-finite."""

    xp = array_module(ref)
    lse = xp.asarray(lse, dtype=xp.float64)
    empty = xp.isneginf(ref_lse)
    if not bool((xp.isneginf(lse) == empty).all()):
        return Check(dtype, math.inf, math.inf, math.inf, False)
    return compare(out, ref, dtype, xp.where(empty, 0.0, lse), xp.where(empty, 0.0, ref_lse))


def run_checked(kernel, p: DecodeProblem, seed: int, num_splits: int | None = None, kv_layout: str = "bshd",
                lengths=None):
    """Launch on fresh random inputs with per-sequence lengths (seeded; includes 0 and 1 when the
    batch has room), outputs poisoned with NaN, and compare with the float64 reference. A paged
    problem reads the same keys from shuffled pages (shuffled_pages, to_pages)."""
    import cupy


    if p.page_size and kv_layout != "bshd":
        raise ValueError("a paged cache is (num_pages, page_size, Hkv, D): kv_layout must be bshd")
    dtype = kernel.config.dtype
    rng = cupy.random.default_rng(seed)
    if lengths is None:
        lengths = np.random.default_rng(seed).integers(0, p.seq_k + 1, size=p.batch)
        lengths[-1] = p.seq_k  # one full sequence
        if p.batch >= 3:
            lengths[0], lengths[1] = 0, 1
    seqlens = cupy.asarray(np.asarray(lengths, dtype=np.int32))
    q = random_normal(rng, (p.batch, p.seq_q, p.heads_q, p.head_dim), dtype)
    kv_shape = ((p.batch, p.seq_k, p.heads_kv, p.head_dim) if kv_layout == "bshd"
                else (p.batch, p.heads_kv, p.seq_k, p.head_dim))
    k, v = random_normal(rng, kv_shape, dtype), random_normal(rng, kv_shape, dtype)
    table, table_stride = None, 0
    if p.page_size:  # the same keys, scattered over shuffled pages (bshd)
        table = cupy.asarray(shuffled_pages(p.batch, p.max_pages, p.num_pages, seed))
        table_stride = p.max_pages
        k_run, v_run = to_pages(k, table, p.num_pages), to_pages(v, table, p.num_pages)
    else:
        k_run, v_run = k, v
    o = poisoned((p.batch, p.seq_q, p.heads_q, p.head_dim), dtype)
    lse = cupy.full((p.batch, p.heads_q, p.seq_q), cupy.nan, dtype=cupy.float32)
    splits = choose_splits(kernel, p, num_splits)
    n_o, n_l = workspace_sizes(p, splits)
    o_part = cupy.full(max(n_o, 1), cupy.nan, dtype=cupy.float32)  # stale data the combine must not read
    lse_part = cupy.full(max(n_l, 1), cupy.nan, dtype=cupy.float32)
    scale = 1.0 / math.sqrt(p.head_dim)
    strides = contiguous_strides(p, "bshd", kv_layout)
    if p.page_size:  # batch stride -> page stride
        page_stride = p.page_size * p.heads_kv * p.head_dim
        strides = strides[:3] + (page_stride,) + strides[4:6] + (page_stride,) + strides[7:]
    plan = plan_for(kernel, p, strides, splits, scale, table_stride)
    sinks, alibi = variant_arrays(p, seed)
    plan(q.data.ptr, k_run.data.ptr, v_run.data.ptr, o.data.ptr, lse.data.ptr, o_part.data.ptr if n_o else 0,
         lse_part.data.ptr if n_l else 0, seqlens.data.ptr, cupy.cuda.get_current_stream(),
         table.data.ptr if table is not None else 0, sinks.data.ptr if sinks is not None else 0,
         alibi.data.ptr if alibi is not None else 0)
    cupy.cuda.get_current_stream().synchronize()
    kf, vf = to_float64(k, dtype), to_float64(v, dtype)
    if kv_layout != "bshd":
        kf, vf = kf.transpose(0, 2, 1, 3), vf.transpose(0, 2, 1, 3)
    ref, ref_lse = reference_decode(to_float64(q, dtype), kf, vf, lengths, causal=p.causal, scale=scale,
                                    window=(p.window_left, p.window_right), softcap=p.softcap, sinks=sinks,
                                    alibi_slopes=alibi)
    return check_output(to_float64(o, dtype), ref, lse, ref_lse, dtype)
