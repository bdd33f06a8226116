"""Split-KV decode: its config, the flash_decode_mma template's rules, and the split-count heuristic.

One config names one specialisation of templates/flash_decode_mma.cu.j2 (the split kernel
`<name>` and its combine kernel `<name>_combine` live in one module). Problem-key fields:
head_dim, m_tiles (16-row mma tiles of packed query rows G * Nq per block: 1 for up to
16 rows, 2 beyond), paged (K/V read through a block table: any page size that is a
multiple of 16, checked by the host) and the variant flags window, softcap, sinks, alibi
(VARIANT_FLAGS: compile-time specialisations, False in entries written before them).
Knobs: block_n (keys a warp takes per pipeline stage), warps (each runs
its own K/V pipeline), stages (cp.async buffers per warp) and num_splits (0: the
wave-efficiency heuristic at run time; else a fixed split count); the copy knobs bulk_copy,
l2_prefetch, evict_first, swizzle (K/V shared-memory rows unpadded, chunks XOR-swizzled) and fused_combine.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

from autoflash.kernels.archs import ARCHS
from autoflash.kernels.config import OpConfig
from autoflash.kernels.template import Template, next_tile

SMEM_PAD = 8        # elements added to each K/V/Q shared-memory row: conflict-free ldmatrix
MERGE_PAD = 8       # floats added to each row of the warps' fp32 merge buffer
MAX_SPLITS = 256    # workspace bound: num_splits * B * Hkv * rows * D floats
# FA3's 0.85 left 8 KV heads x 14 splits = 112 of 132 SMs busy on batch-1 long caches (H200 final table,
# d128 b1 32k: 2888 GB/s); the H200 sweep (NOTES, decode) timed 16 splits (128 blocks) there at 3061, 32 at 3023
WAVE_EFFICIENCY = 0.95
MIN_SPLIT_KEYS = 128  # a split's fixed cost (Q, prologue, partial write, combine) needs this much work
# (H200, benchmarks/NOTES.md decode run 6: MQA b1 n1024 with 128 keys a split, 8 splits, 70 GB/s; 256, 4 splits, 62)
# A grid already on >= 40 % of the SMs gains at most ~2x from splitting, and a split's fixed cost (partials,
# merge) outweighs it on short caches: H200 (benchmarks/decode_split_probe.py, 64 blocks on 132 SMs) 1 split
# beat 2 by 7-16 % at 1024 keys; 2 beat 1 by 1 % at 4096 and 3-15 % at 8192. Such grids split >= 2048 keys.
FILLED_GRID = 0.4
FILLED_MIN_SPLIT_KEYS = 2048
DEFAULT_L2_PREFETCH = 128  # run 6: +1-7 % on every row at or above 512 MB of K/V, none slower beyond noise
COMBINE_GROUPS = 32  # the combine kernel's block: one packed row, a group of 32 lanes per split, at most 32
FUSED_MAX_SPLITS = 32  # fused_combine merges with one lane per split; more splits use the combine kernel
RING_BYTES = 256    # paged: a warp's static ring of table entries, two batches of 32 (template: RING ints)
TILE_DIMS = (16, 32, 64, 128, 256)  # a tile's head dim: a warp's copy pass covers whole rows (D <= 256) or chunks
HEAD_DIMS = tuple(range(8, 257, 8))  # a problem's: any multiple of 8, its tile padded to the next of TILE_DIMS
VARIANT_FLAGS = ("window", "softcap", "sinks", "alibi")  # the forward's, in its order
# The combine on sm_90 (H200, benchmarks/NOTES.md "Twelfth session"): LANES_COMBINE renders a second combine
# kernel, _combine_lanes, that merges a row with lane groups over the splits and a group per float4 column (LSEs
# merged by shuffles, no block barrier), served up to LANES_MAX_SPLITS splits (at 128 splits its scattered 16-byte
# reads lost 3-6 % to _combine's coalesced rows). PDL_COMBINE: the combine is the split kernel's programmatic
# dependent launch (griddepcontrol; the split kernel lets it be scheduled after its key loop: at its start, D 64
# rows with long splits ran 5-19 % slower), so its launch overlaps the split kernel; the merge inside the split kernel
# (fused_combine) is then not used. Together 1.0-1.4x the old combine on 12 of 13 small rows (the 13th level).
# False restores the old combine and launches.
LANES_COMBINE = True
PDL_COMBINE = True
LANES_MAX_SPLITS = 64
# More splits than LANES_MAX_SPLITS only when each keeps this many keys: against 128 splits of 256 keys (MQA batch 1,
# 32k cache) 64 splits ran 1.05x (D 128) and 1.19x (D 64) faster on the H200 (benchmarks/NOTES.md, twelfth session)
LANES_MIN_SPLIT_KEYS = 1024
LANES_WARPS = 16  # _combine_lanes' block at most (its warps loop over the columns; 16 beat 32 by 0-6 %: NOTES)
# Grids of at least a block an SM over short caches (H200, benchmarks/NOTES.md "Thirteenth session"): the tuned
# entries keep 100-200 KB of K/V in flight a block, so one block runs an SM, and a block of a few thousand keys
# spends much of its time filling and draining that pipeline. 16-key x 3-stage buffers (four blocks an SM at D 64,
# two at D 128) ran 1.00-1.10x the tuned knobs on the six one-split 1k-cache rows and 1.01-1.03x on six 2k-4k rows;
# at 8k -2..+2 %. Grids under a block an SM lose with them (64 blocks: 0.83-0.88x): nothing shares the SM.
# Served up to SHORT_CACHE_KEYS keys (0: off), on sm_90, D 64-128, one m-tile: where it was measured.
SHORT_CACHE_KEYS = 4096
SHORT_CACHE_KNOBS = {"block_n": 16, "stages": 3}
# Longer caches (fourteenth session, decode_gap_probe_h200_2026-11-30_s14d/e.log, 5 rounds with an A/A copy): on
# one-split grids of a few blocks an SM, fewer stages than the tuned entries' (D 64: 5, one block an SM; D 128: 3)
# ran faster: D 64 3 stages +1.1..+2.7 % on five rows of 256 and 512 blocks (8k-128k keys), D 128 2 stages +1.8 /
# +2.0 % on the two 512-block rows and level at 256; both level or -1 % at 2048 blocks, whose waves already balance.
# Head dim -> (fewest blocks an SM, knobs), served from LONG_CACHE_KEYS keys up to LONG_CACHE_WAVES blocks an SM (0:
# off): the measured ranges.
LONG_CACHE_KEYS = 8192
LONG_CACHE_WAVES = 4
LONG_CACHE_RULES = {64: (1, {"stages": 3}), 128: (2, {"stages": 2})}


@dataclass(frozen=True)
class DecodeConfig(OpConfig):
    head_dim: int
    m_tiles: int       # 16-row tiles of packed query rows per block
    block_n: int       # keys one warp takes per pipeline stage
    warps: int         # threads = 32 * warps; a block step is warps * block_n keys
    stages: int        # cp.async K/V buffers per warp
    num_splits: int = 0  # 0: chosen at run time (split_heuristic); else fixed
    bulk_copy: bool = False  # sm_90: K/V rows by the bulk copy engine (mbarrier) instead of cp.async
    l2_prefetch: int = 0     # cp.async K/V: L2 fetches the whole 128/256-byte span of a miss (0: no hint)
    evict_first: bool = False  # K/V (read once) loaded with an L2 evict_first cache policy
    fused_combine: bool = False  # the last split block of a row merges (no combine launch; <= 32 splits)
    swizzle: bool = False  # K/V buffers unpadded, 16-byte chunks XOR-swizzled by row (else rows padded by 16 B)
    paged: bool = False  # K/V read through a block table from (num_pages, page_size, Hkv, D) caches
    # Attention variants (issue 17, the forward's contract; problem-key fields, run-time values in the
    # kernel's argument tail): sliding window, logit softcap, attention sinks, ALiBi.
    window: bool = False
    softcap: bool = False
    sinks: bool = False
    alibi: bool = False

    op: ClassVar[str] = "decode"
    name_parts: ClassVar[tuple] = (("head_dim", "d"), ("m_tiles", "mt"), ("block_n", "bn"), ("warps", "w"),
                                   ("stages", "s"), ("num_splits", "ns"), ("l2_prefetch", "pf"))

    @property
    def block_m(self) -> int:
        return 16 * self.m_tiles

    @property
    def step_keys(self) -> int:
        return self.warps * self.block_n


def tile_dim(head_dim: int) -> int:
    """The head dim of a decode tile for a problem's head_dim: the next of TILE_DIMS. The padding columns are
    zero-filled in shared memory (Q, K and V), so they add nothing to S or to the O columns written; nothing of them
    is read from or written to HBM (the template's HBM_DIM)."""
    return next_tile(head_dim, TILE_DIMS)  # (past 256: refused by the key's values)


def m_tiles_for(rows: int, head_dim: int) -> int:
    """16-row tiles per block for G * Nq packed rows: one up to 16 rows, two beyond (D <= 128;
    more rows take more m-blocks, which re-read K/V, mostly from L2)."""
    return 1 if rows <= 16 or head_dim > 128 else 2


def m_blocks(rows: int, m_tiles: int) -> int:
    return math.ceil(rows / (16 * m_tiles))


class DecodeMmaTemplate(Template):
    name = "flash_decode_mma"
    template_file = "flash_decode_mma.cu.j2"
    op = "decode"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90")
    dtypes = ("fp16", "bf16")
    key_values = {"head_dim": HEAD_DIMS, "m_tiles": (1, 2)}  # paged: both values
    knobs = {
        "block_n": (16, 32, 64),
        "warps": (2, 4, 8),
        "stages": (2, 3, 4, 5, 6),
        "num_splits": (0, 1, 2, 4, 8, 16, 32, 64, 128, 256),
        "bulk_copy": (False, True),
        "l2_prefetch": (0, 128, 256),
        "evict_first": (False, True),
        "fused_combine": (False, True),
        "swizzle": (False, True),
    }

    @staticmethod
    def q_in_regs(cfg: DecodeConfig) -> bool:
        """Q fragments (m_tiles * D / 4 registers) stay resident beside O (m_tiles * D / 2)
        up to 16 x 128; beyond, each k-step re-reads them from shared memory."""
        return cfg.m_tiles * tile_dim(cfg.head_dim) <= 128

    def smem_bytes(self, cfg: DecodeConfig) -> int:
        """The warps' stage mbarriers, then Q rows + every warp's K/V buffers (rows padded by SMEM_PAD
        elements, K/V rows not with swizzle); after the key loop
        the space past the barriers holds the warps' (m, l, O) for the merge, whichever is larger."""
        dim = tile_dim(cfg.head_dim)
        stride = dim + SMEM_PAD
        kv_stride = dim if cfg.swizzle else stride
        elem = 2  # fp16 / bf16
        barriers = math.ceil(8 * cfg.warps * cfg.stages / 16) * 16
        pipeline = (cfg.block_m * stride + cfg.warps * cfg.stages * 2 * cfg.block_n * kv_stride) * elem
        pipeline += 128 * cfg.swizzle  # the K/V buffers start on a 128-byte boundary
        merge = 4 * cfg.warps * cfg.block_m * (2 + dim + MERGE_PAD)
        return barriers + max(pipeline, merge)

    @staticmethod
    def variant_static_smem(cfg: DecodeConfig) -> int:
        """Static shared memory of the variant constants (per packed row: WINDOW's first key, ALIBI's
        diagonal and slope, SINKS' sink; SOFTCAP's two factors): kept there, not in registers (spills)."""
        return 4 * cfg.block_m * (cfg.window + 2 * cfg.alibi + cfg.sinks) + 8 * cfg.softcap

    @staticmethod
    def static_smem(cfg: DecodeConfig) -> int:
        """All static shared memory: the variant constants and, paged, each warp's ring of table
        entries (RING_BYTES)."""
        return DecodeMmaTemplate.variant_static_smem(cfg) + RING_BYTES * cfg.warps * cfg.paged

    def own_problems(self, cfg: DecodeConfig) -> list[str]:
        errors = []
        dim = tile_dim(cfg.head_dim)
        if cfg.m_tiles * dim > 256:
            errors.append(f"m_tiles * head_dim = {cfg.m_tiles * dim} > 256 (the tile's head dim: {dim}): O alone "
                          "would take over 128 registers a thread")
        if dim != cfg.head_dim and (cfg.bulk_copy or cfg.swizzle):
            errors.append(f"head_dim {cfg.head_dim} runs in tiles of {dim} columns, zero-filled by cp.async chunk "
                          "by chunk: not with bulk_copy (whole rows) or swizzle")
        if cfg.bulk_copy and cfg.arch != "sm_90":
            errors.append(f"bulk_copy needs sm_90 (cp.async.bulk with mbarrier transaction counts), not {cfg.arch}")
        if cfg.bulk_copy and cfg.paged:
            errors.append("paged caches are read by cp.async copies (a table look-up per 16 keys), not bulk_copy")
        if cfg.bulk_copy and cfg.l2_prefetch:
            errors.append("l2_prefetch applies to cp.async copies, not bulk_copy")
        if cfg.swizzle and (cfg.bulk_copy or cfg.head_dim < 64):
            errors.append("swizzle permutes the 16-byte chunks of rows of >= 8 chunks (head_dim >= 64) written by "
                          "cp.async: not with bulk_copy (whole rows) or head_dim < 64")
        static = self.static_smem(cfg)
        if static and self.smem_bytes(cfg) + static > ARCHS[cfg.arch].smem_per_block:
            errors.append(f"needs {self.smem_bytes(cfg)} B of shared memory plus {static} B of variant constants and "
                          f"page look-ups per block, {cfg.arch} allows {ARCHS[cfg.arch].smem_per_block} B")
        return errors

    def template_values(self, cfg: DecodeConfig) -> dict:
        return {"head_dim": tile_dim(cfg.head_dim), "hbm_dim": cfg.head_dim,
                "mma_type": "bf16" if cfg.dtype == "bf16" else "f16",
                "q_in_regs": "true" if self.q_in_regs(cfg) else "false",
                "lanes_combine": "true" if lanes_combine(cfg) else "false",
                "pdl": "true" if pdl_combine(cfg) else "false"}

    # Defaults, first valid wins (block_n, warps, stages): ~16 KB of K/V per warp stage, 3-4 deep,
    # with the L2::128B prefetch hint on the K/V copies (and on sm_90 the swizzled K/V rows). The H200 sweeps (benchmarks/NOTES.md, decode)
    # put every config within ~4 % of the best on long caches; short splits (small caches) did better
    # with deeper pipelines.
    DEFAULTS = {16: [(64, 4, 4), (32, 4, 2)], 32: [(64, 4, 4), (32, 4, 2)], 64: [(32, 4, 4), (32, 4, 2)],
                128: [(32, 4, 3), (16, 4, 3), (16, 4, 2)], 256: [(16, 4, 3), (16, 4, 2), (16, 2, 2)]}

    def default(self, arch: str, key: dict) -> DecodeConfig:
        # swizzle where measured (H200, sm_90): +4-17 % on six rows, every one faster (benchmarks/NOTES.md, DC);
        # not D 128 with two m-tiles: 254 registers without it, and ptxas spilled 20 B with it (variants)
        head_dim = key.get("head_dim", 0)
        dim = tile_dim(head_dim) if head_dim > 0 else head_dim
        swizzle = arch == "sm_90" and dim == head_dim >= 64 and (key.get("m_tiles", 1) == 1 or head_dim == 64)
        for block_n, warps, stages in self.DEFAULTS.get(dim, []):
            cfg = self.config(arch, key, block_n=block_n, warps=warps, stages=stages, num_splits=0,
                              l2_prefetch=DEFAULT_L2_PREFETCH, swizzle=swizzle)
            if not cfg.problems():
                return cfg
        raise ValueError(f"no {self.name} config for {arch} {key}")


MMA = DecodeMmaTemplate()


def lanes_combine(cfg: DecodeConfig) -> bool:
    """Whether cfg's module has the _combine_lanes kernel (measured on sm_90 only)."""
    return LANES_COMBINE and cfg.arch == "sm_90"


def pdl_combine(cfg: DecodeConfig) -> bool:
    """Whether cfg's combine kernel is launched as its split kernel's programmatic dependent (griddepcontrol:
    sm_90)."""
    return PDL_COMBINE and cfg.arch == "sm_90"


def lighter_buffers(cfg: DecodeConfig, seq_k: int, blocks: int, slots: int) -> DecodeConfig:
    """cfg with fewer K/V bytes a block where `blocks` blocks (a split's), at least one for each of the `slots` SMs,
    read the cache in one split: SHORT_CACHE_KNOBS over short caches (SHORT_CACHE_KEYS), LONG_CACHE_RULES' over
    long ones (LONG_CACHE_KEYS, LONG_CACHE_WAVES), where the knobs hold fewer bytes; else cfg. On such a grid
    split_heuristic always gives one split, so only a fixed count above one is asked about."""
    if not (cfg.num_splits <= 1 and blocks >= slots and seq_k > 0 and cfg.arch == "sm_90" and cfg.m_tiles == 1
            and 64 <= cfg.head_dim <= 128):
        return cfg
    if seq_k <= SHORT_CACHE_KEYS:
        return _lighter_twin(cfg, tuple(SHORT_CACHE_KNOBS.items()))
    fewest, knobs = LONG_CACHE_RULES.get(cfg.head_dim, (0, {}))
    if knobs and seq_k >= LONG_CACHE_KEYS and fewest * slots <= blocks <= LONG_CACHE_WAVES * slots:
        return _lighter_twin(cfg, tuple(knobs.items()))
    return cfg


@functools.lru_cache(maxsize=64)
def _lighter_twin(cfg: DecodeConfig, knobs: tuple) -> DecodeConfig:
    light = cfg.replace(**dict(knobs))
    return light if not light.problems() and MMA.smem_bytes(light) < MMA.smem_bytes(cfg) else cfg


def combine_kernel(cfg: DecodeConfig, num_splits: int) -> tuple[str, int]:
    """The combine kernel's name suffix and block for num_splits splits. _combine_lanes: lane groups of `span`
    lanes (num_splits rounded up to a power of two, at most 32) each take a float4 column, so a warp takes
    32 / span columns; enough warps for the head dim's columns, at most LANES_WARPS (they loop over the rest).
    _combine: a group of 32 lanes per split, at most COMBINE_GROUPS."""
    if not lanes_combine(cfg) or num_splits > LANES_MAX_SPLITS:
        return "_combine", 32 * min(COMBINE_GROUPS, num_splits)
    span = min(32, 1 << max(0, num_splits - 1).bit_length())
    return "_combine_lanes", 32 * min(LANES_WARPS, math.ceil(cfg.head_dim // 4 / (32 // span)))


def min_split_keys(work_blocks: int, slots: int) -> int:
    """Keys a split must hold at least: MIN_SPLIT_KEYS, FILLED_MIN_SPLIT_KEYS on grids that already fill
    FILLED_GRID of the slots."""
    return FILLED_MIN_SPLIT_KEYS if work_blocks >= FILLED_GRID * slots else MIN_SPLIT_KEYS


def split_heuristic(work_blocks: int, n_steps: int, slots: int, max_splits: int = MAX_SPLITS,
                    min_steps: int = 1) -> int:
    """FlashAttention-3's rule (hopper/heuristics.h, design notes §9): one split when the
    (batch, KV head, m-block) blocks already fill 80 % of the slots (one per SM: the H200 sweep
    found one wave of SMs better than one of resident blocks); else the smallest split count
    whose wave efficiency (blocks / slots over whole waves) is at least WAVE_EFFICIENCY of the best,
    among counts that really shorten a split (ceil(n_steps / s) drops) and leave each split at least
    min_steps steps. Shapes only, never cache_seqlens values: fixed under CUDA graphs."""
    if work_blocks <= 0 or n_steps <= 1 or work_blocks >= 0.8 * slots:
        return 1
    limit = max(1, min(max_splits, slots, n_steps // max(1, min_steps)))
    eligible = [s for s in range(1, limit + 1) if s == 1 or math.ceil(n_steps / s) != math.ceil(n_steps / (s - 1))]

    def efficiency(s: int) -> float:
        waves = work_blocks * s / slots
        return waves / math.ceil(waves)

    best = max(efficiency(s) for s in eligible)
    return next(s for s in eligible if efficiency(s) >= WAVE_EFFICIENCY * best)
