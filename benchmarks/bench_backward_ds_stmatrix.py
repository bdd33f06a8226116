"""flash_bwd_wgmma with ops/backward_wgmma.DS_STMATRIX (dS^T to shared memory by stmatrix, one x4 a k-step, instead
of four 4-byte stores a k-step) against the switch off and an A/A copy of off: the served tile (bm64 bn128
w12 s2, dq_via_producer at its rule), each launched as attention_backward launches it, beside SDPA's cuDNN backward,
on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved rounds,
median, spread = range of the round medians). The float64 checks: tests/test_backward_wgmma_ds_stmatrix_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_ds_stmatrix.py [--dtypes bf16]
        [--head-dims 64,128] [--seqs 4096] [--tokens 16384] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "off_aa", "stmatrix", "sdpa_cudnn"]
PAIRS = (("stmatrix", "off"), ("off_aa", "off"), ("stmatrix", "sdpa_cudnn"), ("off", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    # the switch runs between the two copies of off in every round (the second of two equal kernels ran up to 1.7 %
    # faster in the fourth call: an order effect)
    return {"off": (c, {"DS_STMATRIX": False}), "stmatrix": (c, {"DS_STMATRIX": True}),
            "off_aa": (c, {"DS_STMATRIX": False})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "off_aa", "stmatrix")))
