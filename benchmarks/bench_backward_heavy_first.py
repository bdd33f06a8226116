"""flash_bwd_wgmma with ops/backward_wgmma.HEAVY_FIRST (causal keys on the (heads_kv, batch, K/V tiles) grid: every
head's K/V tile j, the heaviest, before any tile j + 1) against the same tile on today's grid: the served tile (bm64
bn128 w12 s2, dq_via_producer at its rule), each launched as attention_backward launches it, beside SDPA's cuDNN
backward, on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved
rounds, median, spread = range of the round medians). Non-causal rows render the same kernel twice: an A/A control.
--tokens 8192 is the decoder step's shape at N 4096 (B 2, 16 heads: 1024 blocks, 7.8 waves of 132). The float64
checks: tests/test_backward_wgmma_heavy_first_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_heavy_first.py [--dtypes bf16]
        [--head-dims 64,128] [--seqs 4096] [--tokens 8192] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["blockidx_x", "heavy_first", "sdpa_cudnn"]
PAIRS = (("heavy_first", "blockidx_x"), ("heavy_first", "sdpa_cudnn"), ("blockidx_x", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    return {"blockidx_x": (c, {"HEAVY_FIRST": ()}), "heavy_first": (c, {"HEAVY_FIRST": (64, 128, 256)})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("blockidx_x", "heavy_first")))
