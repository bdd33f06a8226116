"""flash_bwd_wgmma with ops/backward_wgmma.TMA_LOADS (the producer's elected thread loads Q, dO by TMA and lse2, delta
by bulk copies) against the same tile with the producer warpgroup's 128 threads' cp.async (the switch off): the
served producer tile (bm64 bn128 w12 s2, dq_via_producer at its rule), each launched as attention_backward launches
it, beside SDPA's cuDNN backward, on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs,
CUDA events, interleaved rounds, median, spread = range of the round medians). The float64 checks:
tests/test_backward_wgmma_tma_loads_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_tma_loads.py [--dtypes bf16] [--head-dims 64,128]
        [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["cp_async", "tma", "sdpa_cudnn"]
PAIRS = (("tma", "cp_async"), ("tma", "sdpa_cudnn"), ("cp_async", "sdpa_cudnn"))
ON = {"TMA_LOADS": True}


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    return {"cp_async": (c, {}), "tma": (c, ON)}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("cp_async", "tma")))
