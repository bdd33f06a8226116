"""flash_bwd_wgmma with ops/backward_wgmma.DQ_STMATRIX (the consumers stage dQ by stmatrix in dq_accum's permuted
order, 8 STSM a tile instead of 16 rotated float2 stores and their 64 selects) against the switch off and an A/A copy
of off: the served tile (bm64 bn128 w12 s2, dq_via_producer at its rule, 2), each launched as attention_backward
launches it, beside SDPA's cuDNN backward on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs,
CUDA events, interleaved rounds, median, spread = range of the round medians). The float64 checks:
tests/test_backward_wgmma_dq_stmatrix_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_dq_stmatrix.py [--dtypes bf16]
        [--head-dims 64,128] [--seqs 4096,16384] [--tokens 16384] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "stmatrix", "off_aa", "sdpa_cudnn"]
PAIRS = (("stmatrix", "off"), ("stmatrix", "off_aa"), ("off_aa", "off"), ("stmatrix", "sdpa_cudnn"),
         ("off", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    # the switch runs between the two copies of off in every round (order effects of up to 1.7 % seen before)
    return {"off": (c, {"DQ_STMATRIX": False}), "stmatrix": (c, {"DQ_STMATRIX": True}),
            "off_aa": (c, {"DQ_STMATRIX": False})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "stmatrix", "off_aa")))
