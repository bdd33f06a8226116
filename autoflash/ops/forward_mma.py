"""flash_fwd_mma: tensor-core flash attention forward for sm_80 and up.

mma.sync m16n8k16 (fp16/bf16 in, fp32 accumulate) fed by ldmatrix from shared memory
padded by 16 bytes a row, K/V tiles brought in by a cp.async pipeline of `stages`
buffers. Warps split the block's query rows: each owns m_tiles = block_m / (16 * warps)
mma tiles of 16 rows, keeps its Q fragments in registers for the whole key loop, and
runs the online softmax on its accumulator fragments (4 lanes per row).

stages 1-2 run FlashAttention-2's loop (S, softmax, P V per tile); stages 3-4 run the
template's software-pipelined loop (S_{j+1} = Q K_{j+1}^T issued before P_j V_j, whose
mma interleaves with the softmax of S_{j+1}), with tiles j, j+1 resident and stages - 2
tiles in flight. Q fragments stay in registers where they fit beside O and S (see
q_in_regs); otherwise each k-step re-reads them with ldmatrix.

Head dims: every multiple of 8 up to 256. One not a multiple of the mma k-step (16) is padded to
the next one inside shared memory and registers (a zero chunk per row, written once); global
memory is read and written at the real head dim only. V may have its own head dim (head_dim_v,
Dv != Dqk, any multiple of 8 up to 256: S runs over Dqk, O over Dv). Variants (window, softcap, sinks, ALiBi)
and varlen: every config accepts them (the template specialises on the flags).

Paged KV caches (paged=True, chunked prefill through serve/kvcache.py): K/V are read through a
block table, each cp.async row from its own page (page sizes any multiple of 16). Only paged
kernels take the four arguments appended after the forward contract's tail (launch_args below),
so the shared signature of every other kernel is unchanged.
"""
from __future__ import annotations

import numpy as np

from autoflash.kernels.elements import DTYPE_BYTES
from autoflash.ops.forward_base import ForwardTemplate, KernelConfig, Problem

SMEM_PAD = 8  # elements (16 bytes) added to each shared-memory row: conflict-free ldmatrix
MAX_M_TILES = 2  # 16-row mma tiles per warp the template is built for
REGISTER_OVERHEAD = 56  # addresses, loop state, softmax temporaries, K/V fragments in flight


class MmaTemplate(ForwardTemplate):
    name = "flash_fwd_mma"
    template_file = "flash_fwd_mma.cu.j2"
    archs = ("sm_80", "sm_86", "sm_89", "sm_90")
    dtypes = ("fp16", "bf16")
    head_dims = tuple(range(8, 257, 8))
    head_dims_v = (0,) + head_dims
    paged_kv = True
    knobs = {
        "block_m": (32, 64, 128, 192, 256),
        "block_n": (32, 64, 128, 256),
        "warps": (2, 4, 6, 8, 12, 16),
        "stages": (1, 2, 3, 4),  # 1-2: FlashAttention-2 loop; 3-4: software-pipelined loop (template)
    }

    @staticmethod
    def padded_dim(cfg: KernelConfig) -> int:
        """The head dim the mma work runs on: rounded up to the k-step of 16 (the template's DIM)."""
        return -(-cfg.head_dim // 16) * 16

    @staticmethod
    def padded_dim_v(cfg: KernelConfig) -> int:
        """V's and O's head dim rounded up to 16 (the template's DIM_V)."""
        return -(-(cfg.head_dim_v or cfg.head_dim) // 16) * 16

    @staticmethod
    def m_tiles(cfg: KernelConfig) -> int:
        """16-row mma tiles per warp (0 when block_m does not split evenly over the warps)."""
        rows = 16 * cfg.warps
        return cfg.block_m // rows if cfg.block_m % rows == 0 else 0

    @staticmethod
    def register_estimate(cfg: KernelConfig, q_in_regs: bool | None = None) -> int:
        """32-bit registers per thread that must stay live: Q fragments (D/4 per 16-row tile,
        or 4 when re-read from shared memory each k-step), O accumulators (Dv/2), S
        accumulators (Bc/2), plus a fixed overhead."""
        mt = MmaTemplate.m_tiles(cfg)
        if q_in_regs is None:
            q_in_regs = MmaTemplate.q_in_regs(cfg)
        dim = MmaTemplate.padded_dim(cfg)
        q_regs = dim // 4 if q_in_regs else 4
        return mt * (q_regs + MmaTemplate.padded_dim_v(cfg) // 2 + cfg.block_n // 2) + REGISTER_OVERHEAD

    @staticmethod
    def q_in_regs(cfg: KernelConfig) -> bool:
        """Q fragments stay in registers for the whole key loop wherever they fit beside
        O and S (D <= 128 with 16 rows per warp, D <= 64 with 32); otherwise (D = 256, or
        32 rows a warp at D = 128) the template re-reads them with ldmatrix each k-step."""
        return MmaTemplate.register_estimate(cfg, q_in_regs=True) <= cfg.limits.regs_per_thread

    def own_problems(self, cfg: KernelConfig) -> list[str]:
        errors = []
        if cfg.thread_m:
            errors.append(f"thread_m={cfg.thread_m} is a flash_fwd_simt knob; must be 0 for {self.name}")
        mt = self.m_tiles(cfg)
        if not mt:
            errors.append(f"block_m={cfg.block_m} is not a multiple of 16 rows x {cfg.warps} warps")
        elif mt > MAX_M_TILES:
            errors.append(f"{mt} mma tiles of 16 rows per warp (block_m / (16 * warps)); at most {MAX_M_TILES}")
        if cfg.block_n % 16:
            errors.append(f"block_n={cfg.block_n} is not a multiple of the mma k-step (16)")
        if errors:
            return errors
        regs = self.register_estimate(cfg)
        limits = cfg.limits
        if regs > limits.regs_per_thread:
            errors.append(f"~{regs} registers per thread (Q + O + S fragments), over {limits.regs_per_thread}")
        elif regs * cfg.threads > limits.regs_per_sm:
            errors.append(f"~{regs} registers x {cfg.threads} threads exceeds the {limits.regs_per_sm} registers of an SM")
        return errors

    def smem_bytes(self, cfg: KernelConfig) -> int:
        d, dv = self.padded_dim(cfg), self.padded_dim_v(cfg)
        # Qi (rows wide enough for O's staging), then `stages` buffers of Kj and of Vj
        elements = cfg.block_m * (max(d, dv) + SMEM_PAD) + cfg.stages * cfg.block_n * (d + dv + 2 * SMEM_PAD)
        return elements * DTYPE_BYTES[cfg.dtype]

    def template_values(self, cfg: KernelConfig) -> dict:
        return {
            "m_tiles": self.m_tiles(cfg),
            "head_dim_v": cfg.head_dim_v or cfg.head_dim,
            "q_in_regs": "true" if self.q_in_regs(cfg) else "false",
            "mma_type": "bf16" if cfg.dtype == "bf16" else "f16",
        }

    def launch_args(self, cfg: KernelConfig, p: Problem, scale: float):
        """The shared arguments, then (paged kernels only) block_table, table_stride, page_size, num_pages."""
        args = super().launch_args(cfg, p, scale)
        if not cfg.paged:
            return args
        paged = (np.uint64(p.block_table), np.int64(p.table_stride), np.int32(p.page_size), np.int32(p.num_pages))
        return lambda q, k, v, o, lse: args(q, k, v, o, lse) + paged

    # Defaults, first that is valid wins (measured on the H100: benchmarks/NOTES.md).
    # (block_m, block_n, warps, stages)
    DEFAULTS = {
        32: [(128, 64, 4, 2), (64, 64, 4, 2)],
        64: [(128, 64, 4, 2), (64, 64, 4, 2)],
        80: [(128, 32, 4, 1), (128, 64, 8, 2), (64, 64, 4, 2)],
        96: [(128, 32, 4, 1), (128, 64, 8, 2), (64, 64, 4, 2)],
        128: [(128, 32, 4, 1), (128, 64, 8, 2), (64, 64, 4, 2), (64, 32, 4, 2)],
        256: [(64, 32, 4, 2), (32, 32, 2, 1)],
    }

    def default_tiles(self, key: dict) -> list[dict]:
        """The measured head dim's defaults, else those of the next larger measured one (same
        register and shared-memory footprint or more, so they fit)."""
        d = max(key["head_dim"], key.get("head_dim_v", 0))  # the larger head dim sets the footprint
        measured = d if d in self.DEFAULTS else min((m for m in self.DEFAULTS if m >= d), default=None)
        return [dict(block_m=bm, block_n=bn, warps=w, stages=s) for bm, bn, w, s in self.DEFAULTS.get(measured, [])]


MMA = MmaTemplate()
