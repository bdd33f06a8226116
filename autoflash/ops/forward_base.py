"""What the dense forward's templates share: its config, its problem, and the
kernel signature and grid of its templates.

Every forward template has one kernel signature (templates/README.md):
    (q, k, v, o, lse, heads_q, heads_kv, seq_q, seq_k, scale_log2, causal_offset,
     q_sb, q_sh, q_sn, k_sb, k_sh, k_sn, v_sb, v_sh, v_sn, o_sb, o_sh, o_sn)
with q/o of shape (batch, heads_q, seq_q, head_dim) and k/v of shape
(batch, heads_kv, seq_k, head_dim), the head dim contiguous and every other dim strided by
the (batch, head, token) element strides that follow (int64); lse (batch, heads_q, seq_q)
contiguous, or null. causal_offset (int32, read only by causal kernels): query i sees keys
0..i + causal_offset, 0 for top-left alignment, seq_k - seq_q for bottom-right.
A template that takes more (flash_fwd_wgmma: TMA tensor maps) overrides launch_args and
says so with shared_signature = False.
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

    op: ClassVar[str] = "forward"
    name_parts: ClassVar[tuple] = (("head_dim", "d"), ("block_m", "br"), ("block_n", "bc"), ("warps", "w"),
                                   ("stages", "s"), ("thread_m", "tm"))


CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")


def causal_offset(alignment: str, seq_q: int, seq_k: int) -> int:
    """The kernel's causal_offset: query i sees keys 0..i + offset. "top_left" (torch's is_causal):
    0; "bottom_right" (flash-attn >= 2.1, the queries are the last seq_q positions): seq_k - seq_q."""
    if alignment == "top_left":
        return 0
    if alignment == "bottom_right":
        return seq_k - seq_q
    raise ValueError(f"causal_alignment must be one of {CAUSAL_ALIGNMENTS}, got {alignment!r}")


def contiguous_strides(batch: int, heads: int, seq: int, head_dim: int) -> tuple[int, int, int]:
    """(batch, head, token) element strides of a contiguous (batch, heads, seq, head_dim) tensor."""
    return (heads * seq * head_dim, seq * head_dim, head_dim)


@dataclass
class Problem:
    """The run-time shape of one attention call. causal_offset: see causal_offset(); strides:
    the (batch, head, token) element strides of (q, k, v, o), None for contiguous tensors."""

    batch: int
    heads_q: int
    heads_kv: int
    seq_q: int
    seq_k: int
    head_dim: int
    causal: bool
    causal_offset: int = 0
    strides: tuple | None = None

    def operand_strides(self) -> tuple:
        """((q_sb, q_sh, q_sn), (k_...), (v_...), (o_...)) in elements."""
        if self.strides is not None:
            return self.strides
        q = contiguous_strides(self.batch, self.heads_q, self.seq_q, self.head_dim)
        kv = contiguous_strides(self.batch, self.heads_kv, self.seq_k, self.head_dim)
        return (q, kv, kv, q)

    def flops(self) -> float:
        """4 * B * H * Nq * Nk * D, halved for causal (the convention of FlashAttention's papers)."""
        f = 4.0 * self.batch * self.heads_q * self.seq_q * self.seq_k * self.head_dim
        return f / 2 if self.causal else f


class ForwardTemplate(Template):
    """A forward template: its head dims are the problem-key values it supports."""

    op = "forward"
    head_dims: tuple[int, ...] = ()
    shared_signature = True  # False: takes more kernel arguments than the shared ones (not exportable)

    @property
    def key_values(self) -> dict:
        return {"head_dim": self.head_dims}

    def default(self, arch: str, key: dict) -> KernelConfig:
        """The first of default_tiles(key) that passes the rules."""
        for knobs in self.default_tiles(key):
            cfg = self.config(arch, key, **knobs)
            if not cfg.problems():
                return cfg
        raise ValueError(f"no {self.name} config for {arch} {key}")

    def default_tiles(self, key: dict) -> list[dict]:
        raise NotImplementedError

    def launch_args(self, cfg: KernelConfig, p: Problem, scale: float):
        """A function of the five pointers (q, k, v, o, lse) returning the kernel's
        arguments: what depends only on (cfg, p, scale) is converted once, here, so a
        cached launch plan pays only for the pointers."""
        u64 = np.uint64
        tail = shared_tail(p, scale)

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
