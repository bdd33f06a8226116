"""flash_fwd_simt: the seed's algorithm on CUDA cores, register-tiled.

Each thread owns a thread_m x thread_n micro-tile of S = Q K^T and the matching
thread_m rows x (head_dim / threads_x) columns of O. The threads_x threads that
share a row group sit in one warp, so row max and row sum need only shuffles.

Every config accepts the variants (window, softcap, sinks, ALiBi: the template specialises on the
flags; softcap uses the accurate tanhf, fp32 included) and varlen / seqused_k launches.
"""
from __future__ import annotations

from autoflash.ops.forward_base import ForwardTemplate, KernelConfig

SMEM_PAD = 4  # floats added to transposed rows: keeps float4 alignment, shifts banks


class SimtTemplate(ForwardTemplate):
    name = "flash_fwd_simt"
    template_file = "flash_fwd_simt.cu.j2"
    archs = ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
    dtypes = ("fp32", "fp16", "bf16")
    head_dims = tuple(range(8, 257, 8))  # any multiple of 8: a row group's threads split D (the rules check it)
    head_dims_v = (0,) + head_dims  # V's head dim may differ from Q/K's (any pair of these)
    knobs = {
        "block_m": (16, 32, 64, 128),
        "block_n": (16, 32, 64, 128),
        "warps": (2, 4, 8, 16),
        "thread_m": (2, 4, 8),
        "stages": (1,),
    }
    max_registers_estimate = 200  # accumulators + S tile + addressing must fit in 255

    @staticmethod
    def layout(cfg: KernelConfig) -> dict:
        """Thread layout over the tile: row groups x threads_x threads."""
        row_groups = cfg.block_m // cfg.thread_m if cfg.thread_m else 0
        threads_x = cfg.threads // row_groups if row_groups and cfg.threads % row_groups == 0 else 0
        return {
            "row_groups": row_groups,
            "threads_x": threads_x,
            "thread_n": cfg.block_n // threads_x if threads_x else 0,
            "thread_d": (cfg.head_dim_v or cfg.head_dim) // threads_x if threads_x else 0,
        }

    def own_problems(self, cfg: KernelConfig) -> list[str]:
        if cfg.block_m % cfg.thread_m:
            return [f"block_m={cfg.block_m} is not a multiple of thread_m={cfg.thread_m}"]
        lay = self.layout(cfg)
        if not lay["threads_x"]:
            return [f"{cfg.threads} threads cannot be split over {lay['row_groups']} row groups"]
        tx = lay["threads_x"]
        errors = []
        if tx > 32 or tx & (tx - 1):
            errors.append(f"threads per row group ({tx}) must be a power of two <= 32 (one warp)")
        elif cfg.block_n % tx:
            errors.append(f"block_n={cfg.block_n} is not a multiple of threads per row group ({tx})")
        elif cfg.head_dim % tx or (cfg.head_dim_v or cfg.head_dim) % tx:
            errors.append(f"head_dim={cfg.head_dim} (head_dim_v={cfg.head_dim_v or cfg.head_dim}) is not a multiple "
                          f"of threads per row group ({tx})")
        else:
            tn = cfg.block_n // tx
            if tn not in (1, 2, 4, 8):
                errors.append(f"thread_n={tn} (block_n / threads per row group) must be 1, 2, 4 or 8")
            regs = cfg.thread_m * (tn + lay["thread_d"]) + 2 * cfg.thread_m
            if regs > self.max_registers_estimate:
                errors.append(f"~{regs} registers of accumulators per thread, over {self.max_registers_estimate}")
        return errors

    def smem_bytes(self, cfg: KernelConfig) -> int:
        d, dv, bm, bn = cfg.head_dim, cfg.head_dim_v or cfg.head_dim, cfg.block_m, cfg.block_n
        floats = d * (bm + SMEM_PAD) + d * (bn + SMEM_PAD) + bn * dv + bn * (bm + SMEM_PAD)
        return 4 * floats  # Q^T, K^T, V, P^T; all fp32 in shared memory

    def template_values(self, cfg: KernelConfig) -> dict:
        lay = self.layout(cfg)
        return {
            "threads_x": lay["threads_x"],
            "smem_pad": SMEM_PAD,
            "head_dim_v": cfg.head_dim_v or cfg.head_dim,
        }

    def default_tiles(self, key: dict) -> list[dict]:
        """A safe, reasonably fast config (measured on the H100: see benchmarks/NOTES.md)."""
        return [
            dict(block_m=64, block_n=64, warps=8, thread_m=4, stages=1),
            dict(block_m=64, block_n=32, warps=8, thread_m=4, stages=1),
            dict(block_m=32, block_n=32, warps=4, thread_m=4, stages=1),
            dict(block_m=32, block_n=16, warps=4, thread_m=4, stages=1),
            dict(block_m=16, block_n=16, warps=2, thread_m=2, stages=1),
        ]


SIMT = SimtTemplate()
