"""What the dense forward's templates share: its config, its problem, and the
kernel signature and grid of its templates.

Every forward template has one kernel signature (templates/README.md):
    (q, k, v, o, lse, heads_q, heads_kv, seq_q, seq_k, scale_log2, causal_offset,
     q_sb, q_sh, q_sn, k_sb, k_sh, k_sn, v_sb, v_sh, v_sn, o_sb, o_sh, o_sn,       <- shared_tail
     cu_seqlens_q, cu_seqlens_k, seqused_k, window_left, window_right, softcap,   <- variant_tail
     sinks, alibi_slopes, alibi_batch_stride)
(the variant tail, for issues 15 and 17; what each means: ops/reference.py; varlen
pointers and sinks/slopes as uint64, null = not used; window bounds -1 = unbounded; softcap
fp32, 0 = none), with q/o of shape (batch, heads_q, seq_q, head_dim) and k/v of shape
(batch, heads_kv, seq_k, head_dim), the head dim contiguous and every other dim strided by
the (batch, head, token) element strides that follow (int64); lse (batch, heads_q, seq_q)
contiguous, or null. causal_offset (int32): query i's diagonal key is i + causal_offset, 0 for
top-left alignment, seq_k - seq_q for bottom-right; causal, window and ALiBi all use it. Varlen and
seqused_k launches pass BOTTOM_RIGHT_PER_SEQUENCE instead of a bottom-right offset (each sequence's
own seq_k - seq_q). A template that takes more (flash_fwd_wgmma: TMA tensor maps) overrides
launch_args, appends variant_tail after its own arguments, and says so with shared_signature = False.

V's head dim (KernelConfig.head_dim_v, a problem-key field): 0 = head_dim (every config and tuned
entry written before it; names unchanged), else Dv != Dqk (e.g. 192/128, MLA prefill): v is
(batch, heads_kv, seq_k, head_dim_v) and o (batch, heads_q, seq_q, head_dim_v). Templates with
head_dims_v = (0,) refuse it (flash_fwd_wgmma, flash_fwd_mma and flash_fwd_simt all take it).

Schedule fields (KernelConfig pingpong/persistent/o_store, knobs of flash_fwd_wgmma only): -1 = the
template's rule (every config and tuned entry written before them; names unchanged), 0 / 1 = off / on
(o_store: 0 = from registers, 1 = through shared memory and TMA), named "_pp0", "_persist1", "_ostore1",
... after the flags; other templates refuse anything but -1.

Variant flags (compile-time, KernelConfig window/softcap/sinks/alibi): a true flag adds its own
name to the config name ("..._causal_window_softcap_sinks_alibi"); plain configs keep their names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from autoflash.kernels.config import OpConfig
from autoflash.kernels.elements import LOG2E
from autoflash.kernels.template import Template


@dataclass(frozen=True)
class KernelConfig(OpConfig):
    """One specialisation of one forward template. Sequence lengths and batch are
    run-time arguments of the kernel, so one compiled config serves every length."""

    head_dim: int
    causal: bool
    block_m: int  # Br: query rows per thread block
    block_n: int  # Bc: key/value rows per tile
    warps: int  # threads per block = 32 * warps
    stages: int = 1  # shared-memory pipeline depth for K/V tiles
    thread_m: int = 0  # flash_fwd_simt only: query rows per thread (0 = not used)
    window: bool = False  # sliding window mask (Problem.window_left / window_right)
    softcap: bool = False  # logit softcap (Problem.softcap > 0)
    sinks: bool = False  # per-head sink logit in the softmax denominator (Problem.sinks)
    alibi: bool = False  # ALiBi bias (Problem.alibi_slopes)
    head_dim_v: int = 0  # V's (and O's) head dim when it differs from head_dim; 0 = head_dim
    # K/V read through a block table (paged KV cache, Problem.block_table): templates with paged_kv
    # (flash_fwd_wgmma, flash_fwd_mma); not a problem-key field (a paged call runs its unpaged key's config
    # with paged set: serve/kvcache.py)
    paged: bool = False
    # Schedule choices (flash_fwd_wgmma only): -1 = the template's rule, 0 / 1 = off / on. Consumer
    # ping-pong (FA3's inter-warpgroup GEMM turns) and the persistent grid (one CTA per SM looping).
    pingpong: int = -1
    persistent: int = -1
    o_store: int = -1  # O leaves the consumers from registers (0) or by a TMA store from shared memory (1)

    op: ClassVar[str] = "forward"
    name_parts: ClassVar[tuple] = (("head_dim", "d"), ("head_dim_v", "dv"), ("block_m", "br"), ("block_n", "bc"), ("warps", "w"),
                                   ("stages", "s"), ("thread_m", "tm"))
    # (field, prefix) of the schedule fields: named only when not -1, after the flags ("..._causal_pp0")
    SCHEDULE_PARTS: ClassVar[tuple] = (("pingpong", "pp"), ("persistent", "persist"), ("o_store", "ostore"))

    @property
    def name(self) -> str:
        return super().name + "".join(f"_{prefix}{getattr(self, field)}" for field, prefix in self.SCHEDULE_PARTS
                                      if getattr(self, field) != -1)


VARIANT_FLAGS = ("window", "softcap", "sinks", "alibi")  # KernelConfig bools, forward problem-key fields
CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")
# causal_offset of a varlen / seqused_k launch asking for bottom-right alignment: one int cannot
# carry a per-sequence offset, so the kernel uses each sequence's own seq_k - seq_q (common.cuh.j2
# defines the same constant).
BOTTOM_RIGHT_PER_SEQUENCE = 1 << 30


def causal_offset(alignment: str, seq_q: int, seq_k: int) -> int:
    """The kernel's causal_offset: query i sees keys 0..i + offset. "top_left" (torch's is_causal):
    0; "bottom_right" (flash-attn >= 2.1, the queries are the last seq_q positions): seq_k - seq_q."""
    if alignment == "top_left":
        return 0
    if alignment == "bottom_right":
        return seq_k - seq_q
    raise ValueError(f"causal_alignment must be one of {CAUSAL_ALIGNMENTS}, got {alignment!r}")


MAX_TOKEN_STRIDE = 2**31 // 256  # the kernels address rows within a tile with 32-bit offsets


def stepped_strides(shape: tuple, strides: tuple) -> tuple[int, int, int]:
    """(batch, head, token) strides of a (B, H, N, D) array, those of size-1 dims (never stepped along; arbitrary in
    PyTorch) replaced by ones valid for any kernel."""
    b, h, n, d = shape
    sb, sh, sn = strides[:3]
    if n == 1:
        sn = d
    if h == 1:
        sh = sn * n
    if b == 1:
        sb = max(sh * h, sn * n)
    return sb, sh, sn


def dense_strides(shape: tuple, order: tuple | None = None) -> tuple:
    """The element strides of a dense array of `shape` whose dims lie in memory in `order`, outermost first (a
    permutation; None: contiguous, the dims in their own order)."""
    order = order or tuple(range(len(shape)))
    strides, step = [0] * len(shape), 1
    for d in reversed(order):
        strides[d] = step
        step *= shape[d]
    return tuple(strides)


def contiguous_strides(batch: int, heads: int, seq: int, head_dim: int) -> tuple[int, int, int]:
    """(batch, head, token) element strides of a contiguous (batch, heads, seq, head_dim) tensor."""
    return (heads * seq * head_dim, seq * head_dim, head_dim)


@dataclass
class Problem:
    """The run-time shape of one attention call. causal_offset: see causal_offset(); strides:
    the (batch, head, token) element strides of (q, k, v, o), None for contiguous tensors.
    The fields after strides are the variant tail's values (module docstring): device pointers
    as ints (0 = null), window bounds (-1 = unbounded), softcap (0 = none). Varlen: q/o/k/v
    packed (total_q or total_k, heads, D), batch = the number of sequences, seq_q/seq_k = the
    longest. total_q/total_k are not kernel arguments (host-side extents only)."""

    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_k: int
    head_dim: int
    causal: bool
    causal_offset: int = 0
    strides: tuple | None = None
    cu_seqlens_q: int = 0
    cu_seqlens_k: int = 0
    seqused_k: int = 0
    window_left: int = -1
    window_right: int = -1
    softcap: float = 0.0
    sinks: int = 0
    alibi_slopes: int = 0
    alibi_batch_stride: int = 0
    total_q: int = 0  # varlen: the packed token counts of q and k (0 = dense); wgmma's TMA maps end there
    total_k: int = 0
    # Paged K/V (KernelConfig.paged kernels only, appended after the variant tail): k/v are
    # (num_pages, page_size, heads_kv, D) with the k/v batch strides the page strides, block_table
    # a (batch, table_stride >= seq_k / page_size) int32 device pointer; seq_k = the capacity.
    block_table: int = 0
    table_stride: int = 0
    page_size: int = 0
    num_pages: int = 0
    head_dim_v: int = 0  # V's and O's head dim when it differs from head_dim (0: head_dim)

    def fields(self) -> tuple:
        """Every field's value in order: a launch plan's cache key (dataclasses.astuple copies recursively,
        about 20 us a call on the H200 machine's CPU)."""
        return tuple(vars(self).values())

    @property
    def dim_v(self) -> int:
        """V's and O's head dim."""
        return self.head_dim_v or self.head_dim

    def variant_flags(self) -> dict:
        """The KernelConfig variant flags this problem needs."""
        return {"window": self.window_left >= 0 or self.window_right >= 0, "softcap": self.softcap > 0,
                "sinks": self.sinks != 0, "alibi": self.alibi_slopes != 0}

    def operand_strides(self) -> tuple:
        """((q_sb, q_sh, q_sn), (k_...), (v_...), (o_...)) in elements."""
        if self.strides is not None:
            return self.strides
        q = contiguous_strides(self.batch, self.heads_q, self.seq_q, self.head_dim)
        k = contiguous_strides(self.batch, self.heads_kv, self.seq_k, self.head_dim)
        v = contiguous_strides(self.batch, self.heads_kv, self.seq_k, self.dim_v)
        return (q, k, v, contiguous_strides(self.batch, self.heads_q, self.seq_q, self.dim_v))

    def flops(self) -> float:
        """4 * B * H * Nq * Nk * D, halved for causal (the convention of FlashAttention's papers);
        with a window, 4 * B * H * D * (the visible (query, key) pairs), counted exactly. Dv != D:
        2 * (D + Dv) in place of 4 * D (Q K^T and P V)."""
        d2 = 2.0 * (self.head_dim + self.dim_v)
        if self.variant_flags()["window"]:
            return d2 * self.batch * self.heads_q * self.visible_pairs()
        f = d2 * self.batch * self.heads_q * self.seq_q * self.seq_k
        return f / 2 if self.causal else f

    def visible_pairs(self) -> int:
        """(query, key) pairs the causal/window masks leave visible in one (batch, head) (dense)."""
        rows = np.arange(self.seq_q, dtype=np.int64) + self.causal_offset  # each row's diagonal key
        hi = np.full_like(rows, self.seq_k - 1)
        if self.causal:
            hi = np.minimum(hi, rows)
        if self.window_right >= 0:
            hi = np.minimum(hi, rows + self.window_right)
        lo = np.maximum(rows - self.window_left, 0) if self.window_left >= 0 else np.zeros_like(rows)
        return int(np.maximum(hi - lo + 1, 0).sum())


class ForwardTemplate(Template):
    """A forward template: its head dims are the problem-key values it supports."""

    op = "forward"
    head_dims: tuple[int, ...] = ()
    head_dims_v: tuple[int, ...] = (0,)  # V head dims besides head_dim (0 = head_dim): Dv != Dqk support
    shared_signature = True  # False: takes more kernel arguments than the shared ones (not exportable)
    paged_kv = False  # True: its configs may set paged (K/V through a block table)

    @property
    def key_values(self) -> dict:
        return {"head_dim": self.head_dims, "head_dim_v": self.head_dims_v}

    def supports(self, arch: str, key: dict) -> bool:
        return super().supports(arch, {"head_dim_v": 0, **key})  # a key without head_dim_v: Dv = D

    def default(self, arch: str, key: dict) -> KernelConfig:
        """The first of default_tiles(key) that passes the rules."""
        for knobs in self.default_tiles(key):
            cfg = self.config(arch, key, **knobs)
            if not cfg.problems():
                return cfg
        raise ValueError(f"no {self.name} config for {arch} {key}")

    def default_tiles(self, key: dict) -> list[dict]:
        raise NotImplementedError

    def problems(self, cfg: KernelConfig) -> list[str]:
        errors = super().problems(cfg)
        if cfg.paged and not self.paged_kv:
            errors.append(f"{self.name} does not read paged KV caches (paged=True); flash_fwd_wgmma and "
                          "flash_fwd_mma do")
        if cfg.head_dim_v and cfg.head_dim_v == cfg.head_dim:
            errors.append(f"head_dim_v={cfg.head_dim_v} equals head_dim: spelled 0 (one config name per kernel)")
        elif cfg.head_dim_v and self.head_dims_v == (0,):
            errors.append(f"{self.name} does not support a V head dim different from Q/K's (head_dim_v="
                          f"{cfg.head_dim_v}, head_dim={cfg.head_dim}): flash_fwd_wgmma, flash_fwd_mma and "
                          "flash_fwd_simt do")
        for field, _ in KernelConfig.SCHEDULE_PARTS:
            value = getattr(cfg, field)
            if field not in self.knobs and value != -1:  # a template with the knob checks its values
                errors.append(f"{field}={value}: {self.name} has no {field} choice (must be -1, the template's "
                              f"rule); flash_fwd_wgmma has")
        return errors

    def launch_args(self, cfg: KernelConfig, p: Problem, scale: float):
        """A function of the five pointers (q, k, v, o, lse) returning the kernel's
        arguments: what depends only on (cfg, p, scale) is converted once, here, so a
        cached launch plan pays only for the pointers."""
        u64 = np.uint64
        tail = shared_tail(p, scale) + variant_tail(p)

        def args(q, k, v, o, lse):
            return (u64(q), u64(k), u64(v), u64(o), u64(lse)) + tail

        return args

    def grid(self, cfg: KernelConfig, p: Problem) -> tuple[int, int, int]:
        """One block per (query tile, query head, batch): the FlashAttention-2 order.
        Query tiles vary fastest so blocks running together share one K/V head in L2."""
        return (math.ceil(p.seq_q / cfg.block_m), p.heads_q, p.batch)


def shared_tail(p: Problem, scale: float) -> tuple:
    """The shared signature's arguments after the five pointers, converted once per plan."""
    strides = tuple(np.int64(s) for operand in p.operand_strides() for s in operand)
    return (np.int32(p.heads_q), np.int32(p.heads_kv), np.int32(p.seq_q), np.int32(p.seq_k),
            np.float32(scale * LOG2E), np.int32(p.causal_offset)) + strides


def variant_tail(p: Problem) -> tuple:
    """The contract's appended arguments, in order: (cu_seqlens_q, cu_seqlens_k, seqused_k,
    window_left, window_right, softcap, sinks, alibi_slopes, alibi_batch_stride); pointers uint64,
    ints int32, softcap float32. Passed to every kernel, used by the ones specialised for them."""
    u64, i32 = np.uint64, np.int32
    return (u64(p.cu_seqlens_q), u64(p.cu_seqlens_k), u64(p.seqused_k), i32(p.window_left),
            i32(p.window_right), np.float32(p.softcap), u64(p.sinks), u64(p.alibi_slopes),
            i32(p.alibi_batch_stride))
