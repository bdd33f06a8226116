"""The attention backward (issue 16), CPU side: config, problem, input checks, template rules.

dQ, dK, dV from Q, K, V, the forward's O and LSE, and dO. flash_bwd_mma (templates/flash_bwd_mma.cu.j2, sm_80+
mma.sync; flash_bwd_wgmma is ops/backward_wgmma's) has three kernels launched in order on one stream:
  <name>_pre  delta = rowsum(dO * O) in fp32, lse2 = LSE * log2(e) (+inf where the forward saw no key), the fp32
              dQ accumulator zeroed (and, deterministic, the dQ counters)
  <name>      parallel over (K/V tile, K/V head, batch), looping over every query tile of every query head of the K/V
              head's group: P recomputed from Q, K and LSE; dK and dV summed in registers (over the group too, so
              GQA/MQA needs no atomics and no per-query-head dK/dV buffer); dQ added in fp32 to the accumulator (a
              reduction, or with deterministic=True in K/V-tile order behind a per-query-tile counter)
  <name>_dq   dQ = scale * accumulator, in the input dtype.
The grid holds K/V heads, not query heads (B * Hkv * ceil(Nk / block_n) blocks: few for MQA at short lengths). Causal:
the problem's causal_offset (query i sees keys 0..i + offset) is a kernel argument, as in the forward. Head dims: tiles
of 64, 128, 256 (D 256 with 16 keys x 128 columns of dK, dV a warp: small tiles, as FlashAttention-2), every other
multiple of 8 on the next of them (TILE_DIMS, below).

Workspace (fp32/int32, one buffer): lse2 and delta (B*Hq rows padded to PAD_M), the dQ accumulator (B*Hq*Nq*D, D the
tile's head dim) and, deterministic, one counter per (B*Hq, query tile).

Tolerances (relative Frobenius error of each gradient against the float64 forward's, on the same rounded inputs): P
and dS are rounded to the input dtype before their tensor-core products, delta uses the forward's rounded O, and the
gradients are rounded on the way out: a few units of rounding of the dtype each (bf16 2^-9, fp16 2^-12). Measured on
the H200 over tests/test_backward_gpu.py (lengths 1..4097, GQA, causal, D 64/128): bf16 2.1e-3..3.1e-3, fp16
2.7e-4..3.5e-4 (benchmarks/NOTES.md, backward). The bounds leave 3-6x: bf16 1e-2, fp16 2e-3.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar

from autoflash.kernels.config import OpConfig
from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.template import Template, next_tile, spell_values
from autoflash.ops import backward_mma_switches as switches
from autoflash.ops.forward_base import MAX_TOKEN_STRIDE, Problem, causal_offset, stepped_strides

# (Q/K head dim, V head dim) pairs with a backward (Dv != Dqk, e.g. MLA's 192/128; 192 only as such a pair's), served
# by attention() and attention_backward (float64 gradient tests: tests/test_backward_head_dim_v_gpu.py, H200).
HEAD_DIM_PAIRS = ((192, 128), (128, 64))
# The tiles' head dims; any other multiple of 8 up to 256 runs on the next, Q, K, V, dO zero past its head dim in shared
# memory, never read or written past it in global memory (HBM_DIM): exact (zero columns add nothing to S or dP).
TILE_DIMS = (64, 128, 256)
PAD_M, SMEM_PAD = 128, 8  # workspace rows padded to PAD_M per (batch, head); SMEM_PAD elements on smem rows (ldmatrix)
TOLERANCE, FLOP_FACTOR = {"fp16": 2e-3, "bf16": 1e-2}, 2.5  # (backward FLOPs / forward FLOPs: FlashAttention's)


@dataclass(frozen=True)
class BackwardConfig(OpConfig):
    """One specialisation of a backward template; lengths, batch and heads are run-time."""

    head_dim: int
    causal: bool
    block_m: int  # query rows per inner-loop tile
    block_n: int  # keys per block (16 per warp)
    warps: int
    stages: int = 2  # query-tile buffers: 2 prefetches the next (Q, dO, lse2, delta) tile
    deterministic: bool = False  # dQ adds serialised in K/V-tile order: bitwise repeatable
    warps_q: int = 1  # warps along the query columns of S, dP: 2 = FlashAttention-2's 2-D layout
    # Variants (issue 17), compile-time as the forward's: a true flag adds its name to the config name
    window: bool = False  # sliding window (Problem.window_left / window_right): query tiles outside skipped
    softcap: bool = False  # logit softcap (Problem.softcap > 0): dS times 1 - tanh^2
    sinks: bool = False  # per-head sink logit (Problem.sinks): its gradient from the <name>_sink kernel
    alibi: bool = False  # ALiBi bias (Problem.alibi_slopes): constant, no gradient
    varlen: bool = False  # packed sequences (serve/varlen_grad.py): a run-time layout, not a key field; mma only
    head_dim_v: int = 0  # V's head dim if not Q/K's (HEAD_DIM_PAIRS): dV, dO, V at it; not a key field (no entries)
    # flash_bwd_wgmma's dQ reduction (its knob): -1 its rule, 0 the consumers' red.global adds, 1 staged in shared memory
    # and reduced by the producer a row at a time, 2 one bulk reduction a tile; "_dqp<n>" in the name unless -1
    dq_via_producer: int = -1

    op: ClassVar[str] = "backward"
    name_parts: ClassVar[tuple] = (("head_dim", "d"), ("head_dim_v", "dv"), ("block_m", "bm"), ("block_n", "bn"), ("warps", "w"),
                                   ("stages", "s"), ("warps_q", "wq"))

    @property
    def name(self) -> str:
        return super().name + (f"_dqp{self.dq_via_producer}" if self.dq_via_producer != -1 else "")

    def problems(self) -> list[str]:
        errors = super().problems()
        if self.dq_via_producer != -1 and self.template != "flash_bwd_wgmma":
            errors.append(f"dq_via_producer={self.dq_via_producer} is a flash_bwd_wgmma knob; {self.template} "
                          f"needs -1")
        if self.varlen is True and self.template != "flash_bwd_mma":
            errors.append(f"varlen is a flash_bwd_mma mode; {self.template} has no varlen backward yet")
        if self.head_dim_v and self.template != "flash_bwd_mma":
            errors.append(f"head_dim_v (V's own head dim) is a flash_bwd_mma mode; {self.template} has none")
        return errors


class BackwardProblem(Problem):
    """The run-time shape of one backward call: the forward's fields; only the work differs.
    Mutable like Problem (a frozen dataclass cannot derive from it): launch plans key on its fields."""

    def flops(self) -> float:
        """2.5 x the forward's 4 * B * Hq * Nq * Nk * D, halved for causal."""
        return FLOP_FACTOR * super().flops()

    @classmethod
    def from_dict(cls, d: dict) -> "BackwardProblem":
        return cls(**{f: d[f] for f in cls.__dataclass_fields__ if f in d})  # forward fields with defaults may be absent


@dataclass(frozen=True)
class TensorSpec:
    """What the input checks need to know of one array (so they run without torch or a GPU)."""

    name: str
    shape: tuple
    dtype: str  # "fp16", "bf16", "fp32", or the framework's own name of another dtype
    device: str  # e.g. "cuda:0", "cpu"
    contiguous: bool = True
    aligned: bool = True  # data pointer a multiple of 16 bytes


def row_strides(name: str, shape: tuple, strides: tuple, elem_bytes: int) -> tuple[int, int, int]:
    """(batch, head, token) element strides of a (B, H, N, D) array whose rows the strided kernels read in
    place: D contiguous, every row 16-byte aligned, else ValueError. A size-1 dim is never stepped along, so
    its (arbitrary) stride is replaced by a valid one."""
    if strides[3] != 1 and shape[3] > 1:
        raise ValueError(f"{name}'s head dim is not contiguous (strides {tuple(strides)}); the backward reads rows "
                         f"of stride 1: pass {name}.contiguous()")
    sb, sh, sn = stepped_strides(shape, strides)
    if min(sb, sh, sn) < 0 or any(x * elem_bytes % 16 for x in (sb, sh, sn)):
        raise ValueError(f"{name}'s rows are not 16-byte aligned (strides {tuple(strides)} elements of {elem_bytes} "
                         f"B): batch, head and token strides must be non-negative multiples of {16 // elem_bytes}; "
                         f"pass {name}.contiguous()")
    if sn >= MAX_TOKEN_STRIDE:
        raise ValueError(f"{name}'s token stride {sn} is too large (the kernels take < {MAX_TOKEN_STRIDE})")
    return sb, sh, sn


def check_inputs(q: TensorSpec, k: TensorSpec, v: TensorSpec, out: TensorSpec, lse: TensorSpec,
                 grad_out: TensorSpec, causal: bool, causal_alignment: str = "top_left", *,
                 window: tuple[int, int] = (-1, -1), softcap: float = 0.0,
                 alibi_batch_stride: int = -1, strides: tuple | None = None) -> BackwardProblem:
    """The problem of a backward call, or ValueError naming what is wrong (before any launch).
    causal_alignment as the forward's (ops.forward_base.causal_offset): the problem's causal_offset,
    set for causal and for the variants that measure from the diagonal (window, ALiBi), as the
    forward does. Variants (their values checked by serve/variants.check_variants): window (left,
    right) and softcap become problem fields; alibi_batch_stride is the slopes' batch stride (0:
    per-head slopes), -1 for no ALiBi. The sinks and slopes pointers are passed at launch.
    strides (ops/backward_wgmma.STRIDED): the element strides of q, k, v, out, grad_out, which may then be views
    whose rows are read in place (row_strides); the problem's strides are their (batch, head, token) strides, in
    that order (the caller appends dq's, dk's, dv's). lse stays contiguous."""
    arrays = (q, k, v, out, lse, grad_out)
    for t in arrays:
        if not t.device.startswith("cuda"):
            raise ValueError(f"{t.name} is on {t.device}; the backward runs on CUDA tensors")
    if len({t.device for t in arrays}) > 1:
        raise ValueError(f"all inputs must be on one GPU, got {[f'{t.name}: {t.device}' for t in arrays]}")
    for t in (q, k, v, out, grad_out):
        if t.dtype not in TEMPLATE.dtypes:
            raise ValueError(f"{t.name} has dtype {t.dtype}; the backward supports {list(TEMPLATE.dtypes)} "
                             f"(no fp32 path yet)")
        if len(t.shape) != 4:
            raise ValueError(f"{t.name} must have 4 dimensions (batch, heads, seq, head_dim), got {t.shape}")
    if len({t.dtype for t in (q, k, v, out, grad_out)}) > 1:
        raise ValueError(f"q, k, v, out, grad_out must share one dtype, got "
                         f"{[t.dtype for t in (q, k, v, out, grad_out)]}")
    if lse.dtype != "fp32" or tuple(lse.shape) != tuple(q.shape[:3]):
        raise ValueError(f"lse must be float32 of shape {tuple(q.shape[:3])} (the forward's natural-log "
                         f"log-sum-exp), got {lse.dtype} {tuple(lse.shape)}")
    if tuple(k.shape[:3]) != tuple(v.shape[:3]):
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    b, hq, nq, d = q.shape
    bk, hkv, nk, dk = k.shape
    if bk != b or dk != d:
        raise ValueError(f"q {tuple(q.shape)} and k/v {tuple(k.shape)} differ in batch or head_dim")
    o_shape = tuple(q.shape[:3]) + (v.shape[3],)  # V's head dim
    for t in (out, grad_out):
        if tuple(t.shape) != o_shape:
            raise ValueError(f"{t.name} must have q's shape with v's head dim {o_shape}, got {tuple(t.shape)}")
    if min(b, hq, nq, d, hkv, nk) == 0:
        raise ValueError(f"empty input: q {tuple(q.shape)}, k/v {tuple(k.shape)}")
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of key/value heads ({hkv}) for GQA/MQA")
    dv = v.shape[3]
    if dv != d and (d, dv) not in HEAD_DIM_PAIRS:
        raise ValueError(f"head dims {d} (q, k) and {dv} (v) have no backward (Dv != Dqk pairs: "
                         f"{', '.join(f'{a}/{b}' for a, b in HEAD_DIM_PAIRS)})")
    if dv == d and d not in TEMPLATE.key_values["head_dim"]:
        raise ValueError(f"head_dim {d} is not supported by the backward (supports "
                         f"{spell_values(TEMPLATE.key_values['head_dim'])})")
    if max(nq, nk) >= 2**31 // PAD_M:
        raise ValueError(f"sequence length {max(nq, nk)} is too long for the kernels' 32-bit indices")
    views = (q, k, v, out, grad_out) if strides is not None else ()
    for t in arrays:
        if not t.contiguous and t not in views:
            raise ValueError(f"{t.name} is not contiguous; pass {t.name}.contiguous()")
        if not t.aligned:
            raise ValueError(f"{t.name}'s data pointer is not 16-byte aligned; pass a fresh contiguous copy")
    rows = tuple(row_strides(t.name, t.shape, st, DTYPE_BYTES[t.dtype]) for t, st in zip(views, strides or ()))
    offset = causal_offset(causal_alignment, nq, nk)  # ValueError for an unknown alignment
    p = BackwardProblem(b, hq, hkv, nq, nk, d, bool(causal), offset if causal else 0)
    p.head_dim_v = dv if dv != d else 0
    p.window_left, p.window_right, p.softcap = int(window[0]), int(window[1]), float(softcap)
    if p.variant_flags()["window"] or alibi_batch_stride >= 0:  # the diagonal they measure from
        p.causal_offset = offset
    p.alibi_batch_stride = max(alibi_batch_stride, 0)
    p.strides = rows or None
    return p


class BackwardMmaTemplate(Template):
    name = "flash_bwd_mma"
    template_file = "flash_bwd_mma.cu.j2"
    op = "backward"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90")
    dtypes = ("fp16", "bf16")
    # D 256: dK and dV take 2 x block_n x 256 / threads registers a thread, so only 16 keys x 128 columns a warp fits
    # (warps_q 2, block_n = 8 x warps), with small tiles as FlashAttention-2's.
    key_values = {"head_dim": tuple(range(8, 257, 8))}  # (TILE_DIMS, the others padded)
    knobs = {
        "block_m": (32, 64, 128),  # 128: FlashAttention-2's D 64 tile; fewer syncs and dQ tile set-ups per FLOP
        "block_n": (32, 64, 128),
        "warps": (4, 8),
        "stages": (1, 2),
        "warps_q": (1, 2, 4),  # 2: S/dP split over keys x query halves, P^T through shared memory; 4 (D 256): quarters
    }
    # head_dim -> (block_m, block_n, warps, stages, warps_q), first valid wins for untuned keys (NOTES, backward: D 128
    # warps_q 2 10 % ahead of 1, D 64 tied). D 256: warps_q 4, FA2's layout, where two query buffers fit (sm_90;
    # +4.6..+6.0 % over 2, s19f), plain keys only. (64, 64, 8, 2, 2), (32, 32, 4, 2, 2) at D 128 serve varlen.
    SMALL = [(64, 64, 4, 2, 1), (32, 64, 4, 2, 1), (32, 64, 4, 1, 1)]
    DEFAULTS = {64: [(64, 128, 8, 2, 1), (64, 128, 8, 2, 2)] + SMALL,
                128: [(64, 128, 8, 2, 2), (64, 128, 8, 2, 1), (64, 64, 8, 2, 2)] + SMALL + [(32, 32, 4, 2, 2)],
                256: [(64, 64, 8, 2, 4), (64, 64, 8, 2, 2), (64, 64, 8, 1, 2), (32, 64, 8, 2, 2), (32, 64, 8, 1, 2),
                      (32, 32, 4, 1, 2)]}

    # (head_dim, head_dim_v) -> tiles as DEFAULTS (2-D layout, 16 keys a warp: dK and dV of the larger head dims; ptxas:
    # 0 spills at sm_80 / sm_90)
    PAIR_DEFAULTS = {(192, 128): [(64, 64, 8, 2, 2), (32, 32, 4, 1, 2)],
                     (128, 64): [(64, 64, 8, 2, 2), (32, 32, 4, 1, 2)]}

    def problems(self, cfg: BackwardConfig) -> list[str]:
        """The template's checks; a HEAD_DIM_PAIRS Q/K head dim (192) counts as supported with its V's."""
        pair = (cfg.head_dim, cfg.head_dim_v)
        if cfg.head_dim_v and pair in HEAD_DIM_PAIRS and cfg.head_dim not in self.key_values["head_dim"]:
            view = copy.copy(self)
            view.key_values = {**self.key_values, "head_dim": self.key_values["head_dim"] + (cfg.head_dim,)}
            return Template.problems(view, cfg)
        return super().problems(cfg)

    def own_problems(self, cfg: BackwardConfig) -> list[str]:
        tile = tile_dim(cfg.head_dim, cfg.head_dim_v)
        if tile != cfg.head_dim:  # the tile's rules (registers, splits) are those of its own head dim, and
            errors = [f"(head_dim {cfg.head_dim} on {tile}-column tiles) {e}"
                      for e in self.own_problems(cfg.replace(head_dim=tile))]
            # ptxas (NVRTC 13, sm_90): the tiles that sit at the 255-register cap spill 8-172 B padded (the
            # problem's row strides are not powers of two), the next ones fit (185-250 registers)
            if (tile, cfg.block_n if tile == 128 else cfg.block_m) in ((128, 128), (256, 64)):
                errors.append(f"head_dim {cfg.head_dim} (padded to {tile}) spills registers with "
                              f"{'block_n=128' if tile == 128 else 'block_m=64'}")
            return errors
        errors = []
        if cfg.head_dim_v:
            if (cfg.head_dim, cfg.head_dim_v) not in HEAD_DIM_PAIRS:
                errors.append(f"head_dim_v={cfg.head_dim_v} with head_dim={cfg.head_dim}: supported pairs are "
                              f"{list(HEAD_DIM_PAIRS)} (Dv = Dqk is head_dim_v=0)")
            if cfg.varlen:
                errors.append("varlen with head_dim_v: not yet (the packed dO rows have Dqk's stride)")
            if cfg.warps_q != 2 or cfg.block_n * cfg.warps_q // cfg.warps != 16:
                errors.append("head_dim_v needs warps_q=2 with 16 keys a warp (dK and dV of two head dims)")
            if errors:
                return errors
        keys_per_warp = cfg.block_n * cfg.warps_q // cfg.warps  # of S^T, dP^T, dK, dV
        if cfg.block_n * cfg.warps_q % cfg.warps or keys_per_warp not in ((16,) if cfg.warps_q == 1 else (16, 32)):
            errors.append(f"block_n={cfg.block_n} must be 16 keys x warps ({cfg.warps})" + (
                "" if cfg.warps_q == 1 else f" or 8 keys x warps with warps_q={cfg.warps_q}"))
        elif cfg.head_dim == 256 and (cfg.warps_q, keys_per_warp) not in ((2, 16), (4, 32)):
            errors.append("head_dim 256 needs warps_q=2 with block_n = 8 x warps or warps_q=4 with block_n = 8 x "
                          "warps: dK and dV of more keys or columns a warp exceed the registers")
        if cfg.warps_q == 4 and (cfg.head_dim != 256 or cfg.deterministic or cfg.varlen or cfg.window or cfg.softcap
                                 or cfg.sinks or cfg.alibi):
            # (measured and float64-checked at plain D 256 only: s19f; the other keys keep warps_q 2)
            errors.append("warps_q=4 (FlashAttention-2's D 256 layout) is for head_dim 256 without deterministic, "
                          "varlen or variants")
        dq_rows = 16 * cfg.warps_q  # the dQ tile's rows per warp
        if cfg.block_m % dq_rows or cfg.warps % (cfg.block_m // dq_rows):
            errors.append(f"warps={cfg.warps} must split the dQ tile's {cfg.block_m // dq_rows} groups of "
                          f"{dq_rows} rows evenly")
        elif cfg.head_dim % (16 * (cfg.warps // (cfg.block_m // dq_rows))):
            errors.append(f"head_dim={cfg.head_dim} must split into 16-column dQ slices over "
                          f"{cfg.warps // (cfg.block_m // dq_rows)} warps")
        if cfg.warps_q > 1 and (cfg.block_m % (16 * cfg.warps_q) or cfg.warps % cfg.warps_q):
            errors.append(f"warps_q={cfg.warps_q} needs block_m a multiple of {16 * cfg.warps_q} and warps a multiple "
                          f"of {cfg.warps_q}, got block_m={cfg.block_m} warps={cfg.warps}")
        # ptxas (NVRTC 13, sm_80/90): D 128's 2-D layout is at the register cap; 1 stage or deterministic spill 16-48 B
        if (cfg.warps_q == 2 and cfg.head_dim == 128 and cfg.block_m == 64 and keys_per_warp == 32
                and (cfg.stages == 1 or cfg.deterministic)):
            errors.append("warps_q=2 with 32 keys a warp and block_m=64 at head_dim 128 spills registers with "
                          "stages=1 or deterministic")
        if cfg.head_dim == 128 and cfg.block_m == 64 and cfg.warps_q == 1 and cfg.stages == 1:
            # ptxas (NVRTC 13.5, sm_90): 16-76 bytes of spills at 4 and 8 warps since the dQ slice is added from one
            # base address (the 8-warp causal tiles spilled 44 B before it)
            errors.append("head_dim 128 with block_m=64, warps_q=1 spills registers with stages=1")
        if cfg.block_m == 128:  # ptxas (NVRTC 13, sm_90): S^T, dP^T of 128 queries beside dK, dV and dQ
            if cfg.warps_q == 1:
                errors.append("block_m=128 needs warps_q=2: S^T and dP^T of 16 keys x 128 queries a warp spill")
            elif keys_per_warp == 32 and not (cfg.head_dim == 64 and cfg.warps == 8 and cfg.stages == 2):
                errors.append("block_m=128 with 32 keys a warp spills registers except at head_dim 64, 8 warps, "
                              "stages 2")
            elif cfg.head_dim * cfg.block_m // cfg.warps // 32 > 64:
                errors.append(f"block_m=128: the dQ tile takes {cfg.head_dim * cfg.block_m // cfg.warps // 32} "
                              f"registers a thread over {cfg.warps} warps (spills; at most 64)")
        if cfg.head_dim == 256:  # ptxas (NVRTC 13, sm_90): what spills beside the 128 registers of dK, dV
            dq_regs = 16 * cfg.warps_q * cfg.head_dim * (cfg.block_m // (16 * cfg.warps_q)) // cfg.warps // 32
            if dq_regs > 64:
                errors.append(f"head_dim 256: the dQ tile takes {dq_regs} registers a thread with block_m="
                              f"{cfg.block_m} over {cfg.warps} warps (spills; at most 64)")
            if cfg.deterministic and cfg.stages == 1:
                errors.append("head_dim 256 deterministic spills registers with stages=1")
            if cfg.window and cfg.alibi and cfg.block_m == 64:  # sm_90: 4 bytes; block_m 32: 245 registers
                errors.append("head_dim 256 with window and alibi spills registers with block_m=64")
        if cfg.varlen and cfg.head_dim == 128:
            # ptxas (NVRTC 13, sm_90): the per-sequence offsets cost the tiles at the register cap 4-88 B of spills,
            # except 16 keys a warp with warps_q 2 (177-221 registers) and, plain, block_n 128 with warps_q 2
            plain = not (cfg.deterministic or cfg.window or cfg.softcap or cfg.sinks or cfg.alibi)
            if cfg.warps_q != 2 or not (keys_per_warp == 16 or (plain and cfg.block_n == 128)):
                errors.append("varlen at head_dim 128 spills registers unless warps_q=2 with 16 keys a warp "
                              "(or block_n=128 without variants and deterministic)")
        if cfg.varlen and cfg.head_dim == 256 and cfg.block_m != 32:  # ptxas (sm_90): block_m 64 spills 4 bytes
            errors.append("varlen at head_dim 256 needs block_m=32 (block_m 64 spills registers)")
        return errors

    def smem_bytes(self, cfg: BackwardConfig) -> int:
        elem = DTYPE_BYTES[cfg.dtype]
        tile = tile_dim(cfg.head_dim, cfg.head_dim_v)
        stride, stride_v = tile + SMEM_PAD, (cfg.head_dim_v or tile) + SMEM_PAD
        s_tiles = 2 if cfg.warps_q > 1 else 1  # dS^T, and P^T (2-D layouts)
        rows = cfg.block_n * (stride + stride_v) + s_tiles * cfg.block_n * (cfg.block_m + SMEM_PAD)  # K, V, dS^T (P^T)
        rows += cfg.stages * cfg.block_m * (stride + stride_v)  # Q and dO buffers
        return rows * elem + 2 * cfg.stages * cfg.block_m * 4  # + lse2 and delta buffers

    def template_values(self, cfg: BackwardConfig) -> dict:
        tile, heavy = tile_dim(cfg.head_dim, cfg.head_dim_v), runs_heavy_first(cfg)
        by_batch = heavy and tile in switches.HEAVY_BY_BATCH
        s_rows = tile in switches.S_ROWS and runs_s_rows(cfg)
        own = cfg.warps_q > 1 and not (s_rows or cfg.softcap)  # (OWN_DV, OWN_DK: the S^T form's 2-D layouts)
        # DQ_INTERLEAVE's registers: from D 128 on only the by-batch kernels' uniform counters leave room (else spills)
        interleave = (cfg.warps_q > 1 and plain_dense(cfg) and not (cfg.deterministic or s_rows)
                      and (tile < 128 or by_batch))
        return {"mma_type": "bf16" if cfg.dtype == "bf16" else "f16", "pad_m": PAD_M,
                "head_dim": tile, "hbm_dim": cfg.head_dim,
                "strided": False,  # (backward_rows.cuh.j2: the strided small kernels are flash_bwd_wgmma's)
                "dq_accum_permuted": False, "tail_split": False, "causal_walk": False,
                "p_store_early": tile in switches.P_STORE_EARLY, "heavy_first": heavy,
                "heavy_group_mb": switches.HEAVY_GROUP_MB,
                "heavy_by_batch": by_batch, "s_rows": s_rows,
                "own_dv": tile in switches.OWN_DV and own, "own_dk": tile in switches.OWN_DK and own,
                "dq_interleave": tile in switches.DQ_INTERLEAVE and interleave}

    def default(self, arch: str, key: dict) -> BackwardConfig:
        pair = (key["head_dim"], key.get("head_dim_v", 0))
        for bm, bn, w, s, wq in self.PAIR_DEFAULTS[pair] if pair[1] else self.DEFAULTS[tile_dim(key["head_dim"])]:
            cfg = self.config(arch, key, block_m=bm, block_n=bn, warps=w, stages=s, warps_q=wq)
            if not cfg.problems():
                return cfg
        raise ValueError(f"no {self.name} config fits {arch} for {key}: every candidate tile exceeds its shared "
                         f"memory or spills registers")


TEMPLATE = BackwardMmaTemplate()


def tile_dim(head_dim: int, head_dim_v: int = 0) -> int:
    """The head dim of a flash_bwd_mma tile for a problem's: its own for TILE_DIMS and the HEAD_DIM_PAIRS, else the
    next of TILE_DIMS (padded, above)."""
    return head_dim if head_dim_v else next_tile(head_dim, TILE_DIMS)


def runs_s_rows(cfg) -> bool:
    """Whether cfg is a non-causal plain 2-D layout whose tile fits S_ROWS' (the template's static_assert: warps over
    32-query groups split the keys in 16s, P and dS fit the tiles) and compiles clean (4 warps on 64 queries spill)."""
    groups = cfg.block_m // 32
    return (cfg.warps_q == 2 and not (cfg.causal or cfg.window or cfg.softcap or cfg.alibi) and cfg.block_m % 32 == 0
            and cfg.block_m <= cfg.block_n and cfg.warps % groups == 0 and cfg.block_n * groups % (16 * cfg.warps) == 0
            and not (cfg.warps == 4 and groups > 1))


def runs_heavy_first(cfg) -> bool:
    """Whether flash_bwd_mma config cfg runs its blocks heaviest first (HEAVY_FIRST; plain dense keys only)."""
    return cfg.causal and plain_dense(cfg) and tile_dim(cfg.head_dim, cfg.head_dim_v) in switches.HEAVY_FIRST


def plain_dense(cfg) -> bool:
    """Whether cfg's keys are dense (not varlen) and without variants (window, softcap, sinks, ALiBi)."""
    return not (cfg.varlen or cfg.window or cfg.softcap or cfg.sinks or cfg.alibi)


def default_scale(head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim)
