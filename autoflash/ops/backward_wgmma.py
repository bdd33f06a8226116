"""flash_bwd_wgmma: the attention backward on Hopper's warpgroup tensor cores (sm_90a, wgmma),
FlashAttention-3's order of products (templates/flash_bwd_wgmma.cu.j2 says how it computes).

Same kernels, signatures, workspace and launch as flash_bwd_mma (ops/backward_gpu.BackwardLaunch launches both): a
preprocess, the main kernel (one block of 64 x `warps / 4` keys per (K/V tile, K/V head, batch), looping over query
tiles of block_m rows), the dQ conversion. Config fields: block_n = 64 keys per warpgroup, warps = 4 per consumer
warpgroup, plus 4 for a producer warpgroup (warp specialisation: it issues the query tiles' loads, mbarriers replace
the block barrier that opens each tile, setmaxnreg moves its registers to the consumers); stages: query-tile buffers,
2 (the next tile prefetched) or, with a producer warpgroup, 3: the consumers are then software-pipelined (a tile's dQ
wgmma deferred to the next iteration, behind that tile's dK, so both run while the warpgroup stores dS^T and waits at
the barrier); warps_q unused (1).

Served by attention_backward() (serve/autograd.py, serving_config below) wherever it supports the key: its first H200
run was 1.30-1.47x flash_bwd_mma's default on every bf16/fp16 D 64/128 row (bench_backward_wgmma_h200_2026-11-29_run2).
D 64's producer config (block_m 64, one warpgroup computes the dQ tile) ran 3-5 % above the w8 block_m 128 tiles on
every H200 N 4096 row (s6_BW_call1): the D 64 default since. Stages 3 (pipelined) are correct, 2-6 % slower there.
dq_via_producer (a knob; its rule, -1: DQ_RULE): the consumers stage dQ in shared memory and the producer warpgroup
reduces it with bulk copies: a bulk op a row (value 1; H200 s6: D 128 +16-23 % over the same tiles, D 64 -11 %) or one
a tile from an unpadded staging tile (value 2, stored by stmatrix: the rule's at D 64 and D 128 since s8).

Not here (the rules refuse them, ops/backward.py serves them with flash_bwd_mma): the variants (window, softcap,
sinks, ALiBi), head dim 256 (dK and dV of 64 keys x 256 columns are 256 registers a thread), fp32.
deterministic=True (the dQ adds serialised in K/V-tile order, as flash_bwd_mma's) is served (SERVE_DETERMINISTIC):
its bitwise-repeat and float64 tests passed on the H200, and it ran 1.40-1.45x flash_bwd_mma's deterministic default,
at 0.73-0.75x the non-deterministic kernel (causal 0.42-0.44x: a head's blocks add dQ in a wavefront) (s6_BW_call1);
at D 64 on the w8 x 128-query tile (DETERMINISTIC_DEFAULTS: the producer tile 12-13 % slower there, s6_BW_call2).
"""
from __future__ import annotations

import functools

from autoflash.kernels.archs import ARCHS, build_arch
from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.template import Template, next_tile
from autoflash.ops import backward_mma_switches
from autoflash.ops.backward_kernels import PAD_M, BackwardConfig, runs_heavy_first

SMEM_ALIGN = 1024  # the kernel rounds the shared-memory base up to a swizzle atom
REGISTER_BUDGET = 240  # fp32 accumulators a thread may hold at once (ptxas needs the rest)
PRODUCER_ACCUMULATORS = 208  # the same under a producer warpgroup (setmaxnreg gives consumers 240 registers)
NOT_SUPPORTED = ("window", "softcap", "sinks", "alibi")
SERVE_DETERMINISTIC = True  # deterministic keys served here, not by flash_bwd_mma (H200: float64, bitwise tests, s6)
# DQ_OWN_KEYS: each warpgroup adds the dQ tile summed over its own 64 keys (twice the fp32 reductions, no block-wide
# dS^T barrier) instead of a slice summed over the block's keys: 20-24 % slower on every H200 row (run2 log).
DQ_OWN_KEYS = False
# DQ_BULK_REDUCE (the split schedule only): the warpgroups stage their dQ slices in shared memory, one thread a row
# hands each row to the bulk-copy unit as an fp32 reduction: correct, 4-7 % slower on every row (s5_call1 log).
DQ_BULK_REDUCE = False
# The knob dq_via_producer (BackwardConfig; producer configs only, not deterministic: dq_sem orders the
# consumers' adds): the consumers store each tile's dQ slices to an fp32 staging tile in shared memory and the
# producer warpgroup reduces it into dq_accum with bulk copies, so the consumers issue no red.global. Its values
# (DQ_MODES): 1, rows padded (DQ_STAGING_PAD: conflict-free float2 stores), a bulk op per row (BLOCK_M ops,
# serialised per warp); 2, rows unpadded (row stride D, as dq_accum's), so a query tile's dQ is one contiguous range
# reduced by ONE bulk op from one producer thread; the consumers store it by stmatrix (each fp32 a pair of b16), so a
# row's 16-byte chunks hold columns 8b + e + 2i (i = 0..3) at chunk (2b + e) ^ (row % 8), one wavefront a matrix, and
# dq_accum's rows take that order (the _dq kernel restores it: template value dq_accum_permuted).
# H200, same producer tiles: 1 over 0 +16-23 % at D 128, -11 % at D 64 (dq_producer_ab_h200_2026-11-29_s6.log);
# 2 over 0 +5-9 % at D 64 (dq_tile_reduce_h200_2026-11-29_s6_BK_bench.log); 2 over 1, N 4096 bf16/fp16 causal and
# not: D 128 +8-11 % (bf16 432 -> 479 TFLOP/s, 0.94-1.04x cuDNN, was 0.85-0.96x), N 16384 +7-10 %, D 64 +21-25 %;
# the rotation +9-12 % over plain unpadded stores at D 128, 0.99-1.02x at D 64; one round of selects (4
# wavefronts) below two at D 128 (dq_stage_rotate_h200_2026-11-30_s8); stmatrix over the rotation (8 STSM for 16
# STS.64 and 64 FSEL a tile) D 128 +0.3..+2.2 %, D 64 -0.9..+1.4 % against an A/A copy
# (backward_dq_stmatrix_ab_h200_2026-11-30_s18a_bench.log). So 1 is dominated on the H200 (the tuner may pick it).
DQ_RULE = 2  # the rule's value (-1, dq_via_producer_rule) where its staging tile fits, else 0
DQ_STAGING_PAD = 8  # floats added to each staging row of value 1 (the template's DQ_PSTRIDE)
# The read lag (dq_via_producer=2, two staging buffers, stages 2): the producer's dQ thread waits for the read of
# the PREVIOUS tile's bulk reduction (wait_group.read 1), then frees that buffer, so its warp, which also loads the
# query tiles, is not held (ncu, s8: 2.9 % of warp samples on that wait); D 64 +5-6 %, D 128 +0-3 %; with the
# pipelined consumers 11-15 % SLOWER, so not there (dq_read_lag_h200_2026-11-30_s8.log).
DQ_MODES = {0: "consumers' adds", 1: "staged, a bulk op per row", 2: "staged unpadded, a bulk op per tile"}
# Strided operands (issue 16's training step: q, k, v views of a fused projection, dO a transposed view): the three
# kernels take per-tensor (batch, head, token) element strides (head dim contiguous) for q, k, v, out, dout and dq,
# dk, dv as run-time arguments (ops/backward_gpu.BackwardLaunch appends them; contiguous inputs pass their dense
# strides: on the H200 that cost nothing once the producer kept its tile bases uniform, s10_third_x2.sh); the fp32
# dQ accumulator and the workspace stay contiguous. STRIDED on (the default): the host passes views as they are and
# returns gradients laid out like torch.empty_like(q, k, v); off: views are copied to contiguous tensors first.
STRIDED = True
# Causal dispatch order, per head dim: K/V tile j of a causal backward meets n_q_tiles - j * block_n / block_m query
# tiles; in blockIdx.x order the last wave is whatever is left. For these head dims the blocks run heaviest first, in
# groups of pairs (ops/backward_mma_switches.HEAVY_GROUP_MB; a 1-D grid). dk, dv bitwise equal, dq up to its fp32 adds'
# order. H200, against A/A copies: D 128 +8 % at 8k tokens, +1 % at 16k (s11); by groups of 64 MB, D 128 N 4096
# +1..+2 % over every pair at once, D 64 N 4096 +0..+4 % over blockIdx.x order (every pair at once: -35 %) (s25b-d).
HEAVY_FIRST = (64, 128)
# TAIL_SPLIT: a grid of equal blocks whose count is not a whole number of waves (1 block an SM) leaves its last wave
# nearly empty: the table's D 64 rows run 4096 blocks on 132 SMs, 31.03 waves, 4 blocks in the last (at whole waves the
# served D 64 non-causal backward ran 1.07-1.09x cuDNN, at 7.76 / 15.52 waves 0.99 / 1.01x:
# backward_waves_probe_h200_2026-11-30_s18f.log). On, the grid is 1-D: the whole waves' blocks run their K/V tiles
# whole, and each K/V tile left is split into SMs // tiles-left parts dispatched last, each running a share of the
# tile's query tiles and adding its dK, dV in fp32 to a tail buffer in dq_sem's workspace, converted by the tile's last
# part (ops/backward_gpu.BackwardLaunch: the grid; the preprocess zeroes the buffer). Not deterministic (the adds'
# order), not causal (the tiles left are a causal grid's lightest: level to -1.2 %), not on the heavy-first grid. H200,
# against an A/A copy (backward_tail_split_ab_h200_2026-11-30_s18g_bench.log): D 64 non-causal +1.8..+2.5 %
# (0.989-1.008x cuDNN in that run, off 0.959-0.983x).
TAIL_SPLIT = True
# ONE_CONSUMER: a producer warpgroup with ONE consumer warpgroup (block_n 64, warps 8), setmaxnreg 24 / 232,
# __launch_bounds__(256, 2): two CTAs an SM, independent, not two consumers meeting at the dS^T barrier every tile. Not
# deterministic; D 64 only (D 128's tile needs 182 KB); the tuner picks per key. H200 vs the two-consumer tile (s20):
# N 4096 causal +4..+11 %, N 16384 non-causal -3..-8 %; served on the causal D 64 keys until CAUSAL_WALK (s27).
ONE_CONSUMER, ONE_CONSUMER_REGS = True, 232  # (232: the consumer's setmaxnreg there; 240 with two consumers)
# PERSISTENT (TAIL_SPLIT's grid, D 64, two consumers, dq_via_producer 2): one CTA an SM walks the 1-D grid's blocks; the
# producer loads each next block's K, V into a second buffer under the block before and runs its query tiles on (no
# launch, K/V wait or dQ drain a block); a CTA's next block is a counter's next (s28a: level with steps of the grid
# here). setmaxnreg 224 / 56. H200, graph replay against an A/A copy (s21d): D 64 non-causal N 4096 +5.5 / +3.9 %
# (bf16 / fp16), N 16384 +2.8 / +3.6 %.
PERSISTENT = True
# CAUSAL_WALK: PERSISTENT's walk of the heavy-first causal grid, the next block to the first CTA free (a counter). H200
# D 64 causal (s27b): +3..+14 % over the one-consumer tile (static rounds: 4-11 % behind the unwalked grid, s27a).
CAUSAL_WALK = True
# DQ_FREE_ON_FULL: the walk's producer reduces tile g - 2's dQ and waits for its read before arriving on full[g], so
# the consumer staging tile g's dQ (the same buffer) skips its dq_empty wait. H200, graph replay against two A/A
# copies (s24b): D 64 non-causal +1..+5 % (N 4096 +3.5 / +5.4 % bf16 / fp16, N 16384 +2.2 / +0.9 %).
DQ_FREE_ON_FULL = True
# ALTERNATE_DQ: the walk's tile g's dQ by consumer g % 2, not always 0 (their busy time balances; H200 s24e: +0..+3 %)
ALTERNATE_DQ = True
TAIL_WAVES = True  # TAIL_SPLIT where under two parts a tile fit the last wave (backward_gpu.tail_parts; s21h: +1-4 %)
# STAGED_STORE (producer configs): dK, dV leave through the K, V tiles' shared memory in 16-byte chunks, not as 4-byte
# pairs straight to global memory (6-7 us a D 128 block, s22b; staged 2.2 us; the N 4096 call -3.7 %, s22c / s22h)
STAGED_STORE = True
PROBE_CLOCKS = False  # benchmarks/bwd_block_clocks.py: per-block clock64 marks and per-phase laps; never served


class BackwardWgmmaTemplate(Template):
    name = "flash_bwd_wgmma"
    template_file = "flash_bwd_wgmma.cu.j2"
    op = "backward"
    archs = ("sm_90a",)
    dtypes = ("fp16", "bf16")
    # every multiple of 8 to 128: 64 and 128 on their own tiles, the others on the next (TILE_DIMS, tile_dim)
    key_values = {"head_dim": tuple(range(8, 129, 8)), "deterministic": (False, True),
                  **{f: (False,) for f in NOT_SUPPORTED}}
    knobs = {
        "block_m": (64, 128),  # queries per tile: wgmma N of S^T, dP^T
        "block_n": (64, 128),  # keys per block: 64 per warpgroup (three get 168 registers a thread: spills)
        "warps": (4, 8, 12),  # 4 per warpgroup: consumers (block_n / 64), then maybe a producer
        "stages": (2, 3),  # query-tile buffers; 3: also the pipelined consumers (producer configs only)
        "warps_q": (1,),
        "dq_via_producer": (-1, 0, 1, 2),  # dQ staged for the producer's bulk reductions (DQ_MODES; -1: the rule)
    }
    # head_dim -> (block_m, block_n, producer warpgroup), first valid wins (not tuned yet). D 128: the
    # producer ran 8-9 % faster on every H200 row (s5_call2 log); D 64: its producer tile (64 queries, the
    # dQ tile on one warpgroup) 3-5 % faster than w8 x 128 queries on every row (s6_BW_call1 log).
    DEFAULTS = {64: [(64, 128, True), (128, 128, False), (64, 128, False), (64, 64, False)],
                128: [(64, 128, True), (64, 128, False), (64, 64, False)]}
    # deterministic=True where it differs: D 64 keeps w8 x 128 queries (s6 calls 1 / 2: 247 / 129 TFLOP/s
    # bf16 N 4096 non-causal / causal vs 218 / 112 for the producer tile, whose 64-query tiles take twice
    # the semaphore waits, each meeting both warpgroups)
    DETERMINISTIC_DEFAULTS = {64: [(128, 128, False), (64, 128, True), (64, 128, False), (64, 64, False)]}

    @staticmethod
    def consumers(cfg: BackwardConfig) -> int:
        return cfg.block_n // 64

    @staticmethod
    def producer(cfg: BackwardConfig) -> bool:
        """A producer warpgroup besides the consumers (warps = 4 x (consumers + 1))."""
        return cfg.warps == 4 * (BackwardWgmmaTemplate.consumers(cfg) + 1)

    @staticmethod
    def one_consumer(cfg: BackwardConfig) -> bool:
        """A producer warpgroup with one consumer (ONE_CONSUMER): two CTAs an SM."""
        return BackwardWgmmaTemplate.producer(cfg) and BackwardWgmmaTemplate.consumers(cfg) == 1

    @staticmethod
    def dq_split(cfg: BackwardConfig) -> tuple[int, int]:
        """The dQ tile over the warpgroups: (row groups of 64 queries, column groups); DQ_OWN_KEYS:
        every warpgroup the whole tile (rows, 1). With a producer warpgroup, a tile too narrow for a
        64-column slice each (D 64, block_m 64) goes to the first `rows` warpgroups whole (rows, 1):
        the others only hand over their dS^T and run ahead."""
        cfg, rows = tiled(cfg), cfg.block_m // 64
        cols = 1 if DQ_OWN_KEYS else max(1, BackwardWgmmaTemplate.consumers(cfg) // rows)
        if BackwardWgmmaTemplate.producer(cfg) and (cfg.head_dim // cols) % 64:
            cols = 1
        return rows, cols

    @staticmethod
    def ds_buffers(cfg: BackwardConfig) -> int:
        """dS^T tiles in shared memory (the template's DS_BUFS): one without a producer; with one, a tile per
        stage (a warpgroup may run up to stages - 1 tiles ahead), one more where the pipelined schedule
        (stages 3) reads a tile's dS^T an iteration later and the uneven dQ split lets a warpgroup run ahead."""
        if not BackwardWgmmaTemplate.producer(cfg):
            return 1
        rows, cols = BackwardWgmmaTemplate.dq_split(cfg)
        uneven = rows * cols < BackwardWgmmaTemplate.consumers(cfg)
        return cfg.stages + 1 if cfg.stages == 3 and uneven else cfg.stages

    @staticmethod
    def accumulator_registers(cfg: BackwardConfig) -> int:
        """fp32 accumulators live at once a thread: dK, dV, S^T, dP^T and the 16-bit P^T fragments."""
        return tile_dim(cfg.head_dim) + cfg.block_m + cfg.block_m // 4

    def own_problems(self, cfg: BackwardConfig) -> list[str]:
        if tile_dim(cfg.head_dim) != cfg.head_dim:  # a padded head dim: its tile's rules, and no producer warpgroup
            # (ptxas: its 24 registers spilled 32-56 B at 5 of 14 padded head dims with the padding chunks' copies)
            return [f"(head_dim {cfg.head_dim} on {tile_dim(cfg.head_dim)}-column tiles) {e}"
                    for e in self.own_problems(tiled(cfg))] + (
                [f"head_dim {cfg.head_dim} (padded) has no producer warpgroup: warps={4 * self.consumers(cfg)}"]
                if self.producer(cfg) else [])
        errors = []
        if DQ_OWN_KEYS and DQ_BULK_REDUCE:
            errors.append("DQ_BULK_REDUCE stages the split schedule's dQ slices: not with DQ_OWN_KEYS")
        if cfg.deterministic and (DQ_OWN_KEYS or DQ_BULK_REDUCE):
            errors.append("deterministic serialises the split dQ schedule's adds: not with DQ_OWN_KEYS or "
                          "DQ_BULK_REDUCE")
        nc = self.consumers(cfg)
        if cfg.block_n % 64 or cfg.warps not in (4 * nc, 4 * nc + 4):
            errors.append(f"warps={cfg.warps} must be 4 per warpgroup of 64 keys (block_n={cfg.block_n}): "
                          f"{4 * max(nc, 1)}, or {4 * max(nc, 1) + 4} with a producer warpgroup")
            return errors
        if self.one_consumer(cfg) and (not ONE_CONSUMER or cfg.deterministic
                                       or self.smem_bytes(cfg) > ARCHS[cfg.arch].smem_per_block // 2 - 1024):
            errors.append("a producer with one consumer warpgroup (two CTAs an SM) needs ONE_CONSUMER, not "
                          "deterministic, and at most half an SM's shared memory"
                          + (f" ({self.smem_bytes(cfg)} B)" if ONE_CONSUMER else ""))
        elif self.producer(cfg) and (DQ_BULK_REDUCE or DQ_OWN_KEYS or nc not in (1, 2)):
            # (DQ_OWN_KEYS: ptxas serialises the wgmmas for registers at D 128 under setmaxnreg 240)
            errors.append("a producer warpgroup needs two consumers (setmaxnreg 240/24; one under ONE_CONSUMER) and "
                          "the split dQ schedule (not DQ_BULK_REDUCE, DQ_OWN_KEYS)")
        elif self.producer(cfg) and self.accumulator_registers(cfg) > PRODUCER_ACCUMULATORS:
            # ptxas (NVRTC 13.5): D 64 x block_m 128 spills 48 bytes under setmaxnreg 240
            errors.append(f"with a producer warpgroup the consumers get 240 registers: ~{self.accumulator_registers(cfg)} "
                          f"accumulators exceed {PRODUCER_ACCUMULATORS}")
        if cfg.stages == 3 and not self.producer(cfg):
            errors.append("stages=3 (the software-pipelined consumers) needs a producer warpgroup")
        rows, cols = self.dq_split(cfg)
        uneven = self.producer(cfg) and rows * cols < nc  # (dq_split: some warpgroups compute no dQ)
        if not DQ_OWN_KEYS and (nc % rows or (cfg.head_dim // cols) % 64 or (rows * cols != nc and not uneven)):
            errors.append(f"the dQ tile ({cfg.block_m} x {cfg.head_dim}) must split over {nc} warpgroups into "
                          f"64-row x 64k-column slices")
        if nc == 1 and (cfg.head_dim == 128 or cfg.block_m == 128):
            # ptxas (NVRTC 13, sm_90a): 68-352 bytes of spills, the dQ tile beside dK, dV
            errors.append(f"one warpgroup spills registers at head_dim {cfg.head_dim} with block_m {cfg.block_m}")
        regs = self.accumulator_registers(cfg)
        if regs > REGISTER_BUDGET:
            errors.append(f"~{regs} accumulator registers a thread (dK, dV {cfg.head_dim}, S^T, dP^T "
                          f"{cfg.block_m}, P^T {cfg.block_m // 4}) exceed {REGISTER_BUDGET}")
        return errors or self._dq_via_producer_problems(cfg)

    def _dq_via_producer_problems(self, cfg: BackwardConfig) -> list[str]:
        """An explicit dq_via_producer must be able to apply (on) and differ from the rule (one config name per
        kernel); a staging tile that does not fit is refused by the shared-memory check."""
        v = cfg.dq_via_producer
        if v > 0 and not self.producer(cfg):
            return [f"dq_via_producer={v}: the producer warpgroup reduces dQ, and warps={cfg.warps} has none "
                    f"(warps = 4 x (block_n / 64 + 1))"]
        if v > 0 and cfg.deterministic:
            return [f"dq_via_producer={v}: deterministic keeps the consumers' dQ adds (dq_sem orders them in "
                    "K/V-tile order; the producer's bulk reductions are not)"]
        if v == self.dq_via_producer_rule(cfg):
            return [f"dq_via_producer={cfg.dq_via_producer} is the rule's value for this config (head_dim "
                    f"{cfg.head_dim}, warps {cfg.warps}, stages {cfg.stages}, deterministic {cfg.deterministic}): "
                    f"spelled -1 (one config name per kernel)"]
        return []

    def dq_via_producer_rule(self, cfg: BackwardConfig) -> int:
        """dq_via_producer=-1: DQ_RULE (2) for producer configs, not deterministic, whose shared memory holds a
        staging tile (not D 128 stages 3); 0 elsewhere."""
        if not DQ_RULE or not self.producer(cfg) or cfg.deterministic:
            return 0
        room = ARCHS[cfg.arch].smem_per_block - self._base_smem(cfg) - SMEM_ALIGN
        return DQ_RULE if room >= self._staging_tile_bytes(cfg, DQ_RULE) + 16 else 0

    def dq_mode(self, cfg: BackwardConfig) -> int:
        """This config's dQ path (DQ_MODES): the knob, or its rule at -1."""
        return self.dq_via_producer_rule(cfg) if cfg.dq_via_producer == -1 else cfg.dq_via_producer

    def dq_via_producer(self, cfg: BackwardConfig) -> bool:
        """Whether this config stages dQ for the producer (the knob, or its rule at -1)."""
        return self.dq_mode(cfg) > 0

    def _base_smem(self, cfg: BackwardConfig) -> int:
        """Shared memory before the dQ staging tiles (smem_layout's total without them)."""
        return self._layout(cfg)["total"]

    def smem_layout(self, cfg: BackwardConfig) -> dict:
        lay = self._layout(cfg)
        staging, dq_bufs, total = self.dq_staging_bytes(cfg), 0, lay["total"]
        if staging:  # (dq_via_producer) two staging tiles where they fit, else one; an mbarrier pair each
            fits = total + 2 * (staging + 16) + SMEM_ALIGN <= ARCHS[cfg.arch].smem_per_block
            dq_bufs = 2 if fits else 1
            total += dq_bufs * (staging + 16)
        if self.persistent(cfg):  # kv_empty[2], a slot per staging tile, the next blocks' 2 mbarriers and 2 indices,
            # then the second K/V buffer (1 KB-aligned)
            total = -(-(total + 16 + 16 * dq_bufs + 24) // SMEM_ALIGN) * SMEM_ALIGN + 2 * lay["kv"]
        return {**lay, "dq_staging": staging, "dq_bufs": dq_bufs, "total": total}

    def tail_split(self, cfg: BackwardConfig) -> bool:  # (its main kernel on TAIL_SPLIT's 1-D grid)
        return TAIL_SPLIT and not (cfg.deterministic or cfg.causal or heavy_first(cfg))

    def persistent(self, cfg: BackwardConfig) -> bool:
        """Whether cfg's main kernel walks TAIL_SPLIT's (or CAUSAL_WALK's) blocks with one CTA an SM (PERSISTENT)."""
        walked = self.tail_split(cfg) or (CAUSAL_WALK and heavy_first(cfg) and not cfg.deterministic)
        return (PERSISTENT and walked and self.producer(cfg) and self.consumers(cfg) == 2
                and tiled(cfg).head_dim == 64 and cfg.stages == 2 and self.dq_mode(cfg) == 2)

    def _layout(self, cfg: BackwardConfig) -> dict:
        cfg, eb = tiled(cfg), DTYPE_BYTES[cfg.dtype]
        kv = cfg.block_n * cfg.head_dim * eb
        qo = cfg.block_m * cfg.head_dim * eb
        ds = cfg.block_n * cfg.block_m * eb
        dq = cfg.block_m * (cfg.head_dim + 4) * 4 if DQ_BULK_REDUCE else 0  # the fp32 dQ staging tile
        st = cfg.stages  # Q, dO, lse2, delta per stage; (producer) dS^T tiles and two mbarriers per stage
        ds_bufs, bars = (self.ds_buffers(cfg), 16 * st) if self.producer(cfg) else (1, 0)
        total = 2 * kv + 2 * st * qo + ds_bufs * ds + 2 * st * 4 * cfg.block_m + dq + bars
        return {"kv": kv, "qo": qo, "ds": ds, "total": total}

    @staticmethod
    def _staging_tile_bytes(cfg: BackwardConfig, mode: int) -> int:
        return cfg.block_m * (tile_dim(cfg.head_dim) + (0 if mode == 2 else DQ_STAGING_PAD)) * 4

    def dq_staging_bytes(self, cfg: BackwardConfig) -> int:
        """One fp32 dQ staging tile (dq_via_producer on, producer configs), its rows padded at value 1; 0 otherwise."""
        if not (self.producer(cfg) and self.dq_via_producer(cfg)):
            return 0
        return self._staging_tile_bytes(cfg, self.dq_mode(cfg))

    def smem_bytes(self, cfg: BackwardConfig) -> int:
        return self.smem_layout(cfg)["total"] + SMEM_ALIGN

    def template_values(self, cfg: BackwardConfig) -> dict:
        hbm_dim, cfg = cfg.head_dim, tiled(cfg)  # (the tile's values, the problem's rows in global memory)
        rows, cols = self.dq_split(cfg)
        tile_reduce = self.producer(cfg) and self.dq_mode(cfg) == 2  # (its staging by stmatrix permutes dq_accum)
        persistent = self.persistent(cfg)
        return {"wgmma_type": "bf16" if cfg.dtype == "bf16" else "f16", "pad_m": PAD_M,
                "head_dim": cfg.head_dim, "hbm_dim": hbm_dim, "head_dim_v": 0,  # (backward_rows: V's is Q/K's)
                "consumers": self.consumers(cfg), "producer": "true" if self.producer(cfg) else "false",
                "dq_own_keys": "true" if DQ_OWN_KEYS else "false",
                "dq_bulk": "true" if DQ_BULK_REDUCE else "false", "dq_rs": rows, "dq_cs": cols,
                "dq_n": cfg.head_dim // cols, "dq_via_producer": bool(self.dq_staging_bytes(cfg)),
                "dq_bufs": self.smem_layout(cfg)["dq_bufs"],
                "dq_pad": 0 if self.dq_mode(cfg) == 2 else DQ_STAGING_PAD,
                "dq_tile_reduce": tile_reduce, "dq_accum_permuted": tile_reduce,  # (the latter: backward_rows' _dq)
                "dq_read_lag": self.reads_dq_with_lag(cfg), "strided": True, "heavy_first": heavy_first(cfg),
                "heavy_group_mb": backward_mma_switches.HEAVY_GROUP_MB,
                "tail_split": self.tail_split(cfg), "persistent": persistent,
                "causal_walk": persistent and cfg.causal, "probe_clocks": PROBE_CLOCKS,
                "dq_free_on_full": DQ_FREE_ON_FULL and persistent, "alternate_dq": ALTERNATE_DQ and persistent,
                "staged_store": STAGED_STORE and self.producer(cfg),
                "consumer_regs": ONE_CONSUMER_REGS if self.one_consumer(cfg) else 224 if persistent else 240,
                "producer_regs": 56 if persistent else 24, "smem_bytes": self.smem_bytes(cfg),
                "min_blocks": 2 if self.one_consumer(cfg) else 1}

    def reads_dq_with_lag(self, cfg: BackwardConfig) -> bool:
        """Whether the producer frees each dQ staging buffer one tile late (the read lag, above; not the walk's
        DQ_FREE_ON_FULL, which waits for each read before the next tile's full[])."""
        return (self.producer(cfg) and self.dq_mode(cfg) == 2 and self.smem_layout(cfg)["dq_bufs"] == 2
                and cfg.stages == 2 and not (DQ_FREE_ON_FULL and self.persistent(cfg)))

    def default(self, arch: str, key: dict) -> BackwardConfig:
        table = self.DETERMINISTIC_DEFAULTS if key.get("deterministic") else {}
        dim = tile_dim(key["head_dim"])
        for bm, bn, producer in table.get(dim, self.DEFAULTS.get(dim, [])):
            cfg = self.config(arch, key, block_m=bm, block_n=bn, warps=4 * (bn // 64 + producer), stages=2,
                              warps_q=1)
            if not cfg.problems():
                return cfg
        raise ValueError(f"no {self.name} config fits {arch} for {key}")


TEMPLATE = BackwardWgmmaTemplate()
TILE_DIMS = (64, 128)  # the tiles' head dims; any other multiple of 8 to 128 runs on the next, padded as flash_bwd_mma's


def tile_dim(head_dim: int) -> int:
    """The head dim of a flash_bwd_wgmma tile for a problem's: the next of TILE_DIMS (past 128: refused by the key)."""
    return next_tile(head_dim, TILE_DIMS)


def tiled(cfg: BackwardConfig) -> BackwardConfig:
    """cfg with its tile's head dim (the config every rule, layout and render value is computed for)."""
    dim = tile_dim(cfg.head_dim)
    return cfg if dim == cfg.head_dim else cfg.replace(head_dim=dim)


def heavy_first(cfg) -> bool:
    """Whether cfg's main kernel runs its blocks heaviest first (causal, a HEAVY_FIRST head dim)."""
    return cfg.causal and cfg.head_dim in HEAVY_FIRST if cfg.template == TEMPLATE.name else runs_heavy_first(cfg)


def takes_strides(cfg) -> bool:
    """Whether cfg's kernels take the operands' strides (flash_bwd_wgmma's do; flash_bwd_mma reads contiguous rows)."""
    return cfg.template == TEMPLATE.name


def serving_config(arch: str, key: dict) -> BackwardConfig | None:
    """flash_bwd_wgmma's default for a backward key on a GPU of `arch` where the template serves it
    (sm_90 GPUs, bf16/fp16, D 64/128, no variant, deterministic only with SERVE_DETERMINISTIC), else
    None (flash_bwd_mma serves it). Cached per key: attention_backward() asks on every call."""
    return _serving_config(arch, tuple(sorted(key.items())))


@functools.cache
def _serving_config(arch: str, key_items: tuple) -> BackwardConfig | None:
    key = dict(key_items)
    if key.get("deterministic") and not SERVE_DETERMINISTIC:
        return None
    use = build_arch(TEMPLATE.archs, arch)
    return TEMPLATE.default(use, key) if use is not None and TEMPLATE.supports(use, key) else None
