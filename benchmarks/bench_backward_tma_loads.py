"""flash_bwd_wgmma with ops/backward_wgmma.TMA_LOADS (the producer's elected thread loads Q, dO by TMA and lse2, delta
by bulk copies) against the same tiles with the producer warpgroup's 128 threads' cp.async (the switch off): the
served producer tile (bm64 bn128 w12 s2, dq_via_producer at its rule), contiguous kernels ("cp_async", "tma") and the
strided kernels on the same contiguous inputs ("strided_cp", "strided_tma": what views cost, the maps taking the
strides), each launched as attention_backward launches it, beside SDPA's cuDNN backward, on the same inputs
(benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved rounds, median, spread = range of
the round medians). The float64 checks: tests/test_backward_wgmma_tma_loads_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_tma_loads.py [--dtypes bf16] [--head-dims 64,128]
        [--seqs 4096] [--precompile]
"""
import dataclasses
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["cp_async", "tma", "strided_cp", "strided_tma", "sdpa_cudnn"]
PAIRS = (("tma", "cp_async"), ("strided_tma", "strided_cp"), ("tma", "sdpa_cudnn"), ("cp_async", "sdpa_cudnn"))
ON = {"TMA_LOADS": True}


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    s = dataclasses.replace(c, strided=True)
    return {"cp_async": (c, {}), "tma": (c, ON), "strided_cp": (s, {}), "strided_tma": (s, ON)}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("cp_async", "tma")))
