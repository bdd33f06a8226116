"""flash_fwd_wgmma: Hopper (sm_90a) flash attention forward, FlashAttention-3 style.

One producer warpgroup (warps 0-3) issues TMA copies of Qi and of Kj/Vj tiles into a STAGES-deep ring of 128-byte-
swizzled shared-memory buffers, completing on mbarriers; block_m / 64 consumer warpgroups each own 64 query rows and run
S = Qi Kj^T (wgmma, both operands in shared memory) and O += P Vj (wgmma, P from registers) with the online softmax in
base 2. `setmaxnreg` moves registers from the producer to the consumers.
Kernel signature = the shared one (templates/README.md) plus three tensor maps passed by value (4-D, built from the
operands' real strides) and the batch size (see templates/flash_fwd_wgmma.cu.j2 and autoflash/tma.py), then the forward
contract's variant tail (ops/forward_base.py); the grid is 1-D and persistent (one CTA per SM), see `grid`.
Varlen: the maps cover the packed (total, H, D) tensors as a batch of one, the kernel starts each tile at its sequence's
first token, and work items are numbered per sequence (`items`), so no slot is spent past a short sequence's end.
Head dims: any multiple of 8 (shared-memory tiles padded to whole 64-column blocks, see the template). V may have its
own head dim (head_dim_v, Dv != Dqk, e.g. 192/128 MLA prefill): Q/K tiles and S run over head_dim, the V tiles, O's
accumulators and store over head_dim_v; V's tensor map has its own.
Paged K/V (paged=True, chunked prefill through serve/kvcache.py): the producer warpgroup's 128 threads read the block
table once per 16-key group of a K/V tile (page sizes are multiples of 16); groups whose rows are all keys of the
sequence come by TMA (16-row boxes of K/V's maps over the pages), the rest by cp.async from the producer's 128 threads
(rows past the sequence's keys zero-filled); Q on TMA. Paged kernels take block_table, table_stride, page_size and
num_pages after the contract's tail (as flash_fwd_mma's); dense launches only (seqused_k allowed).
Schedule: intra-warpgroup overlap always; consumer ping-pong and the persistent grid are knobs (KernelConfig pingpong /
persistent, -1 = the rule: ping-pong iff causal, the grid persistent; measured on the H100, benchmarks/NOTES.md), so the
tuner may try the other schedule per problem.
O's store (KernelConfig o_store, -1 = o_store_rule): from registers (0), or (1) staged in shared memory and written by
one TMA store per consumer warpgroup, so the consumers start the next item at once; the kernel then takes a fourth
tensor map (O's) after V's. Varlen launches of a TMA kernel store from registers (a run-time branch); paged launches
store by TMA like dense ones. Above D 128 (no room for the staging tile) dense plain configs store O by TMA through
their own Qi tile (`o_via_q`).
"""
from __future__ import annotations

import math

import numpy as np

from autoflash.kernels.archs import ARCHS
from autoflash.kernels.device import sm_count
from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.kernels.tma import cached_operand_map, qkv_map_args
from autoflash.ops.forward_base import (VARIANT_FLAGS, ForwardTemplate, KernelConfig, Problem, shared_tail,
                                       variant_tail)

# Per consumer-warpgroup count nc: (producer, consumer) registers after setmaxnreg; 128 (producer + nc consumer) <= 64K.
REG_SPLIT = {1: (0, 0), 2: (24, 240), 3: (24, 160)}
# Paged kernels: the producer's 128 threads run the cp.async loop (page look-ups, 64-bit addresses) and spill in 24
# registers; the consumers give some back: 56 / 216 where the consumers need little (ptxas: D 40 spilled 12 B with a
# 48-register producer since the TMA page groups), else 40 / 232 (D 256 spilled 136 B at 224).
PAGED_REG_SPLIT = {1: (0, 0), 2: ((56, 216), (40, 232)), 3: (32, 160)}
PAGED_LIGHT_CONSUMER = 160  # consumer_registers() up to this take the 56 / 216 split
PAGE_GROUP = 16  # rows of a paged K/V TMA box: page sizes are multiples of 16, so a group is in one page
# Registers a consumer thread needs besides S, P and O (addresses, m_i, l_i, loop state).
REG_OVERHEAD = 24
VARIANT_REGS = {"softcap": 16, "alibi": 12}  # their extra registers a consumer thread (ptxas fit, three consumers)
BARRIER_BYTES = 8
SMEM_ALIGN = 1024  # 128-byte swizzle atoms repeat every 1024 B: tiles start on that boundary


class WgmmaTemplate(ForwardTemplate):
    name = "flash_fwd_wgmma"
    template_file = "flash_fwd_wgmma.cu.j2"
    archs = ("sm_90a",)
    shared_signature = False  # + three TMA tensor maps and the batch size
    dtypes = ("fp16", "bf16")
    head_dims = tuple(range(8, 257, 8))  # any multiple of 8: tiles padded to 64 columns in shared memory
    head_dims_v = (0,) + head_dims  # V/O head dim of its own (0 = head_dim)
    paged_kv = True  # paged=True: K/V through a block table (cp.async by the producer warpgroup)
    knobs = {
        "block_m": (64, 128, 192),  # Br = 64 x consumer warpgroups
        "block_n": (64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256),  # Bc: wgmma N, and K of P.V
        "warps": (8, 12, 16),  # 4 x (1 producer + consumer warpgroups)
        "stages": (2, 3, 4),  # K/V shared-memory ring depth
        "pingpong": (-1, 0, 1),  # consumer warpgroups take turns issuing GEMMs (-1: iff causal)
        "persistent": (-1, 0, 1),  # grid: one CTA per SM looping, or one per item (-1: `persistent`)
        "o_store": (-1, 0, 1),  # O from registers (0) or by a TMA store through shared memory (1); -1: the rule
    }

    @staticmethod
    def consumers(cfg: KernelConfig) -> int:
        return cfg.block_m // 64

    def own_problems(self, cfg: KernelConfig) -> list[str]:
        errors = []
        nc = self.consumers(cfg)
        if cfg.warps != 4 * (nc + 1):
            errors.append(f"warps={cfg.warps} must be 4 x (1 producer + {nc} consumer warpgroups) = {4 * (nc + 1)}")
        if cfg.thread_m:
            errors.append("thread_m is not used by flash_fwd_wgmma (must be 0)")
        if cfg.block_n % 16:
            errors.append(f"block_n={cfg.block_n} must be a multiple of 16 (k of the P.V wgmma)")
        budget = reg_split(cfg)[1] or 255
        regs = self.consumer_registers(cfg)
        if regs > budget:
            errors.append(f"~{regs} registers per consumer thread (S {cfg.block_n // 2} + P {cfg.block_n // 4} "
                          f"+ O {dim_v(cfg) // 2} + {REG_OVERHEAD}) exceed the {budget} a consumer gets")
        errors += self._schedule_problems(cfg) + self._o_store_problems(cfg)
        if nc == 3 and cfg.paged:
            # the producer's cp.async loop spilled 80 B in the 32 registers three consumers leave it
            errors.append("paged K/V needs block_m 64 or 128 (three consumer warpgroups leave the producer "
                          "too few registers for its cp.async loop)")
        extra = sum(n for flag, n in VARIANT_REGS.items() if getattr(cfg, flag))
        if nc == 3 and extra and regs + extra > budget:
            errors.append(f"softcap/alibi need ~{regs + extra} registers per consumer thread, more than three consumer "
                          f"warpgroups get ({budget} each): use a smaller block_n or block_m 128")
        return errors

    def _schedule_problems(self, cfg: KernelConfig) -> list[str]:
        """An explicit schedule value must differ from its rule's (one config name per kernel)."""
        errors = []
        if cfg.pingpong != -1 and self.consumers(cfg) != 2:
            errors.append(f"pingpong={cfg.pingpong}: ping-pong needs two consumer warpgroups (block_m 128), "
                          f"block_m={cfg.block_m} has {self.consumers(cfg)} (must be -1)")
        elif cfg.pingpong == pingpong_rule(cfg):
            errors.append(f"pingpong={cfg.pingpong} is the rule's value for causal={cfg.causal}: spelled -1 "
                          "(one config name per kernel)")
        if cfg.persistent == int(self.persistent_rule(cfg)):
            errors.append(f"persistent={cfg.persistent} is the rule's value (WgmmaTemplate.persistent="
                          f"{self.persistent}): spelled -1 (one config name per kernel)")
        return errors

    def _o_store_problems(self, cfg: KernelConfig) -> list[str]:
        """An explicit o_store must differ from the rule's, and O's staging tile must fit (o_store=1)."""
        if cfg.o_store == -1:
            return []
        if cfg.o_store == int(self.o_store_rule(cfg)):
            return [f"o_store={cfg.o_store} is the rule's value for this tile and head dim: spelled -1 "
                    "(one config name per kernel)"]
        need, limit = self.smem_bytes(cfg), ARCHS[cfg.arch].smem_per_block
        if cfg.o_store == 1 and need > limit:
            staging = cfg.block_m * padded_head_dim(dim_v(cfg)) * DTYPE_BYTES[cfg.dtype]
            return [f"o_store=1: O's {staging} B staging tile does not fit beside this tile's Q and K/V ring "
                    f"({need} B of shared memory, {cfg.arch} allows {limit} B): use fewer stages or a smaller "
                    "block_n, or o_store -1"]
        return []

    def o_store_tma(self, cfg: KernelConfig) -> bool:
        """Whether the kernel stores O by TMA: the config's choice, or (o_store=-1) the rule's."""
        return self.o_store_rule(cfg) if cfg.o_store == -1 else cfg.o_store == 1

    def o_store_rule(self, cfg: KernelConfig) -> bool:
        """TMA where measured to win and it fits (H200, kernel level, same tiles: D 128 +7-10 % and D 96 +7 % at
        N 1024, D 128 causal N 4096 +3.6 %; D 64 neutral; D 256 and 64-row tiles lose: benchmarks/NOTES.md), so
        128-row tiles with Q/K's and V's head dims in 96-128 (D 128's geometry); registers elsewhere."""
        return (cfg.block_m == 128 and all(O_STORE_RULE_DIMS[0] <= d <= O_STORE_RULE_DIMS[1]
                                           for d in (cfg.head_dim, dim_v(cfg)))
                and self._smem_layout(cfg, True)["total"] + SMEM_ALIGN <= ARCHS[cfg.arch].smem_per_block)

    def o_via_q(self, cfg: KernelConfig) -> bool:
        """O over Qi: each consumer warpgroup writes O over its own Qi rows and stores them by TMA, then hands Qi
        back once the store has read them. Dense plain (no variant, not paged) configs above D 128 that would store
        from registers, Dv = D (H200, kernel level: D 256 N 1024 +7-11 %, N 4096 causal +4 %, non-causal -1 %
        inside the A/A spread; benchmarks/NOTES.md "O_VIA_Q")."""
        return (cfg.head_dim > O_STORE_RULE_DIMS[1] and dim_v(cfg) == cfg.head_dim and not cfg.paged
                and not any(getattr(cfg, flag, False) for flag in VARIANT_FLAGS) and not self.o_store_tma(cfg))

    def takes_o_map(self, cfg: KernelConfig) -> bool:  # O stored by TMA: through its staging tile, or over Qi
        return self.o_store_tma(cfg) or self.o_via_q(cfg)

    def skips_idle_rows(self, cfg: KernelConfig) -> bool:  # IDLE_ROWS_SKIP's kernels: three consumer warpgroups
        return IDLE_ROWS_SKIP and self.consumers(cfg) == 3

    @staticmethod
    def consumer_registers(cfg: KernelConfig) -> int:
        return cfg.block_n // 2 + cfg.block_n // 4 + dim_v(cfg) // 2 + REG_OVERHEAD

    def smem_layout(self, cfg: KernelConfig) -> dict:
        return self._smem_layout(cfg, self.o_store_tma(cfg))

    def _smem_layout(self, cfg: KernelConfig, o_tma: bool) -> dict:
        eb = DTYPE_BYTES[cfg.dtype]
        cols = padded_head_dim(cfg.head_dim)  # whole 128-byte swizzle column blocks
        q_bytes = cfg.block_m * cols * eb
        kv_bytes = cfg.block_n * cols * eb  # one K tile
        v_bytes = cfg.block_n * padded_head_dim(dim_v(cfg)) * eb  # one V tile (V's own head dim)
        q_off, k_off = 0, q_bytes  # Qi first, then the K ring
        v_off = k_off + cfg.stages * kv_bytes
        bar_off = v_off + cfg.stages * v_bytes
        extra = {}
        if o_tma:  # O's staging tile after the V ring
            extra = {"o_off": bar_off}
            bar_off += cfg.block_m * padded_head_dim(dim_v(cfg)) * eb
        # Q full, Q empty; K full, V full, K empty, V empty per stage
        bars = 2 + 4 * cfg.stages
        total = bar_off + bars * BARRIER_BYTES
        return {"q_off": q_off, "k_off": k_off, "v_off": v_off, "bar_off": bar_off,
                "q_bytes": q_bytes, "kv_bytes": kv_bytes, "v_bytes": v_bytes, "total": total, **extra}

    def smem_bytes(self, cfg: KernelConfig) -> int:
        # + SMEM_ALIGN: the kernel rounds the dynamic shared-memory base up to 1024 B.
        return self.smem_layout(cfg)["total"] + SMEM_ALIGN

    def template_values(self, cfg: KernelConfig) -> dict:
        lay = self.smem_layout(cfg)
        nc = self.consumers(cfg)
        producer_regs, consumer_regs = reg_split(cfg)
        return {
            **{flag: "true" if getattr(cfg, flag, False) else "false" for flag in VARIANT_FLAGS},
            "head_dim_v": dim_v(cfg),
            "consumers": nc,
            "producer_regs": producer_regs,
            "consumer_regs": consumer_regs,
            "wgmma_type": "bf16" if cfg.dtype == "bf16" else "f16",
            "q_off": lay["q_off"],
            "k_off": lay["k_off"],
            "v_off": lay["v_off"],
            "bar_off": lay["bar_off"],
            "kv_bytes": lay["kv_bytes"],
            "v_bytes": lay["v_bytes"],
            "q_bytes": lay["q_bytes"],
            "overlap": 1,  # issue S(j+1) = Qi K(j+1)^T before softmax of tile j finishes P.V (FA3 intra-warpgroup)
            # consumer warpgroups take turns issuing GEMMs (FA3 inter-warpgroup ping-pong); the template
            # applies it only with two consumers
            "pingpong": pingpong_rule(cfg) if cfg.pingpong == -1 else cfg.pingpong,
            "o_store_tma": int(self.takes_o_map(cfg)), "o_via_q": int(self.o_via_q(cfg)),
            "idle_rows_skip": int(self.skips_idle_rows(cfg)),
            **({"o_off": lay["o_off"]} if "o_off" in lay else {"o_off": lay["q_off"]} if self.o_via_q(cfg) else {}),
        }

    def default_tiles(self, key: dict) -> list[dict]:
        # Measured on the H100 (benchmarks/NOTES.md, flash_fwd_wgmma v3), bf16 N=4096; other head dims take
        # the tiles of the next of 64, 128, 256 (not measured).
        tiles = {
            (64, False): (192, 128, 2), (64, True): (192, 128, 3),
            (128, False): (128, 128, 3), (128, True): (128, 128, 3),
            (256, False): (128, 80, 2), (256, True): (128, 80, 2),
        }
        d = max(key["head_dim"], key.get("head_dim_v", 0))  # the larger head dim sets the footprint
        bm, bn, st = tiles[(min(m for m in (64, 128, 256) if m >= d), key["causal"])]
        # Variant keys: the plain tiles, or (softcap/ALiBi at D <= 64: three consumers spill at block_n 128, and the
        # smaller tiles that fit ran 4-13 % slower) two consumers with the causal D 64 tiles.
        plain = [dict(block_m=bm, block_n=bn, warps=4 * (bm // 64 + 1), stages=st),
                 dict(block_m=128, block_n=128, warps=12, stages=3)]
        plain = plain[1:] if bm == 192 and (key.get("softcap") or key.get("alibi")) else plain
        if key.get("window") and 96 <= min(key["head_dim"], key.get("head_dim_v", 0) or key["head_dim"]) and d <= 128:
            # window keys: two stages leave room for the TMA O store (H200, bf16 D 128 N 4096 causal (1024, 0):
            # 428 TFLOP/s vs 391 on three-stage register-store tiles, benchmarks/wgmma_fw_h200_*_s6_call2_window128)
            plain.insert(0, dict(block_m=128, block_n=128, warps=12, stages=2))
        if key.get("head_dim_v", 0) and key["head_dim_v"] <= 128 < key["head_dim"]:
            # 192/128 (MLA prefill): 128 x 128 two-stage tiles fit (Q 48 KB, K 2 x 48 KB, V 2 x 32 KB at
            # D 192, bf16) and O holds Dv / 2 registers; FlashAttention-3's choice for this pair (not measured here)
            plain.insert(0, dict(block_m=128, block_n=128, warps=12, stages=2))
        return plain

    # ------------------------------------------------------------ launching
    def launch_args(self, cfg: KernelConfig, p: Problem, scale: float):
        """The shared arguments, tensor maps for Q, K and V (by value, 128 B each; a TMA O store: and O),
        the batch, then the variant tail. The function says how many leading pointers its maps embed
        (struct_pointers: q, k, v, and o with O's map), so a packed launch rebuilds them when one changes."""
        u64 = np.uint64
        sizes = shared_tail(p, scale)
        tail = (np.int32(p.batch),) + variant_tail(p)
        o_map = self._o_map(cfg, p)
        if cfg.paged:
            args = self._paged_launch_args(cfg, p, sizes, tail, o_map)
        else:
            geometry = map_geometry(cfg, p)

            def args(q, k, v, o, lse):
                maps = qkv_map_args(q, k, v, *geometry) + o_map(o)
                return (u64(q), u64(k), u64(v), u64(o), u64(lse)) + sizes + maps + tail

        args.struct_pointers = 4 if self.takes_o_map(cfg) else 3
        return args

    @staticmethod
    def _paged_launch_args(cfg: KernelConfig, p: Problem, sizes: tuple, tail: tuple, o_map):
        """Paged kernels: Q's tensor map, then K's and V's over the caches as (num_pages, Hkv, page_size,
        D) with 16-row boxes (one per 16-key group of a page, by TMA; the rows past a sequence's last
        whole group come by cp.async), then block_table, table_stride, page_size, num_pages."""
        if p.cu_seqlens_q:
            raise ValueError("flash_fwd_wgmma reads paged K/V in dense launches only (no cu_seqlens)")
        u64 = np.uint64
        qs, ks, vs, _ = p.operand_strides()
        # the kernel computes offsets within a page in 32 bits (one 64-bit product per page)
        if p.page_size * max(ks[2], vs[2]) >= 2 ** 31:
            raise ValueError(f"flash_fwd_wgmma paged K/V: a page of {p.page_size} rows with row stride "
                             f"{max(ks[2], vs[2])} elements spans 2^31 elements or more")
        paged = (u64(p.block_table), np.int64(p.table_stride), np.int32(p.page_size), np.int32(p.num_pages))

        def args(q, k, v, o, lse):
            tq = cached_operand_map(q, cfg.dtype, p.batch, p.heads_q, p.seq_q, cfg.head_dim, qs,
                                    cfg.block_m).kernel_arg()
            tk, tv = (cached_operand_map(ptr, cfg.dtype, p.num_pages, p.heads_kv, p.page_size, dim, strides,
                                         PAGE_GROUP).kernel_arg()
                      for ptr, dim, strides in ((k, cfg.head_dim, ks), (v, dim_v(cfg), vs)))
            return (u64(q), u64(k), u64(v), u64(o), u64(lse)) + sizes + (tq, tk, tv) + o_map(o) + tail + paged

        return args

    def _o_map(self, cfg: KernelConfig, p: Problem):
        """o -> the O tensor map argument the kernel takes after V's (a TMA O store), else ().
        Dense: (B, Hq, Nq, Dv) with o's strides, 64-row boxes (one consumer warpgroup's rows).
        Varlen kernels store O from registers; the map (over the packed tensor) is passed, never used."""
        if not self.takes_o_map(cfg):
            return lambda o: ()
        _, _, _, os_ = p.operand_strides()
        batch, rows = p.batch, p.seq_q
        if p.cu_seqlens_q:
            batch, rows = 1, p.total_q
            os_ = (os_[1] * p.heads_q + os_[2] * rows, os_[1], os_[2])
        if any(stride * DTYPE_BYTES[cfg.dtype] % 16 for stride in os_):
            raise ValueError(f"{cfg.name} stores O by TMA and needs O's (batch, head, token) strides {tuple(os_)} "
                             "in multiples of 16 bytes")
        geometry = (cfg.dtype, batch, p.heads_q, rows, dim_v(cfg), tuple(os_), 64)
        return lambda o: (cached_operand_map(o, *geometry).kernel_arg(),)

    # The kernel walks work items blockIdx.x, blockIdx.x + gridDim.x, ..., so the grid decides the schedule: one
    # CTA per SM looping (persistent: the next item's Qi and K/V loads run under this item's epilogue; +5-15%
    # non-causal on the H100), or one CTA per item. Causal items are pairs of query tiles of equal total cost,
    # so a static round-robin balances them. The rule of configs with persistent=-1 (True, False, or None: iff
    # not causal); benchmarks set it.
    persistent: bool | None = True

    def persistent_rule(self, cfg: KernelConfig) -> bool:
        return (not cfg.causal) if self.persistent is None else bool(self.persistent)

    @staticmethod
    def items(cfg: KernelConfig, p: Problem) -> int:
        """Work items of a launch, as the kernel numbers them: (query tile or causal pair, head, batch);
        varlen, per head, total_q // rows-per-item + batch slots (each sequence's own units, at most
        one spare per sequence: see the template)."""
        rows = cfg.block_m * (2 if cfg.causal else 1)  # causal: (T-1-u, u) pairs
        if p.cu_seqlens_q:
            return (p.total_q // rows + p.batch) * p.heads_q
        return math.ceil(p.seq_q / rows) * p.heads_q * p.batch

    def grid(self, cfg: KernelConfig, p: Problem) -> tuple[int, int, int]:
        items = self.items(cfg, p)
        persistent = self.persistent_rule(cfg) if cfg.persistent == -1 else cfg.persistent == 1
        if persistent:
            sms, tiles = _sm_count(), -(-p.seq_q // cfg.block_m)
            spread = (self.skips_idle_rows(cfg) and not (cfg.causal or p.cu_seqlens_q)
                      and tiles * cfg.block_m - p.seq_q >= 64 and sms % tiles == 0)
            items = min(items, sms - spread)  # on a multiple of the tiles every idle last tile goes to the same CTAs
        return (items, 1, 1)


O_STORE_RULE_DIMS = (96, 128)  # o_store_rule: TMA for Q/K's and V's head dims in this range (128-row tiles)
# Consumer warpgroups whose rows are all past the sequence skip their work (template; NOTES.md, eleventh session), in
# 192-row tiles only (skips_idle_rows): 128-row ones gained nothing, and it spilled in some (paged D 256, Dqk 192).
IDLE_ROWS_SKIP = True


def pingpong_rule(cfg: KernelConfig) -> int:
    """Ping-pong of configs with pingpong=-1: it helped the causal kernels only (H100, NOTES.md v3)."""
    return 1 if cfg.causal else 0


def reg_split(cfg: KernelConfig) -> tuple[int, int]:
    """(producer, consumer) registers a thread after setmaxnreg (0: no setmaxnreg)."""
    nc = WgmmaTemplate.consumers(cfg)
    if not cfg.paged or nc != 2:
        return (PAGED_REG_SPLIT if cfg.paged else REG_SPLIT)[nc]
    light, heavy = PAGED_REG_SPLIT[2]
    return light if WgmmaTemplate.consumer_registers(cfg) <= PAGED_LIGHT_CONSUMER else heavy


def dim_v(cfg: KernelConfig) -> int:
    """V's and O's head dim (head_dim unless the config has its own)."""
    return cfg.head_dim_v or cfg.head_dim


def padded_head_dim(head_dim: int) -> int:
    """Columns of a shared-memory tile: the head dim rounded up to whole 64-element blocks."""
    return -(-head_dim // 64) * 64


def map_geometry(cfg: KernelConfig, p: Problem) -> tuple:
    """Everything a Q/K/V tensor map encodes besides its pointer (qkv_map_args' arguments after the pointers):
    shapes and element strides; the maps are cached per pointer set and geometry. Dense: (B, H, N, D) with the
    operands' strides. Varlen: the packed (total, H, D) tensors as one batch of total tokens, so a tile may read the
    next sequence's rows (the kernel masks them) but never past the tensor (TMA zero-fills). Last: V's head dim."""
    qs, ks, vs, _ = p.operand_strides()
    if not p.cu_seqlens_q:
        return (cfg.dtype, p.batch, p.heads_q, p.heads_kv, p.seq_q, p.seq_k, cfg.head_dim, qs, ks, vs,
                cfg.block_m, cfg.block_n, dim_v(cfg))
    total_q, total_k = p.total_q, p.total_k
    if total_q <= 0 or total_k <= 0:
        raise ValueError("flash_fwd_wgmma needs the packed token counts (Problem.total_q / total_k) of a "
                         "varlen launch: its tensor maps must end where the tensors end")

    def one_batch(strides, heads, total):  # batch stride of the single batch: past every element
        _, sh, sn = strides
        return (sh * heads + sn * total, sh, sn)

    return (cfg.dtype, 1, p.heads_q, p.heads_kv, total_q, total_k, cfg.head_dim, one_batch(qs, p.heads_q, total_q),
            one_batch(ks, p.heads_kv, total_k), one_batch(vs, p.heads_kv, total_k), cfg.block_m, cfg.block_n,
            dim_v(cfg))


def _sm_count() -> int:
    import cupy
    return sm_count(cupy.cuda.Device().id)


WGMMA = WgmmaTemplate()
