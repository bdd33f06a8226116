"""flash_bwd_wgmma with ops/backward_wgmma.DIVISION_FREE (the loops' pair index split into (query head, query tile)
by a multiply, not an integer division) against the switch off and an A/A copy of off: the served tile (bm64 bn128
w12 s2, dq_via_producer at its rule), each launched as attention_backward launches it, beside SDPA's cuDNN backward,
on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved rounds,
median, spread = range of the round medians). The float64 checks: tests/test_backward_wgmma_division_free_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_division_free.py [--dtypes bf16]
        [--head-dims 64,128] [--seqs 4096] [--tokens 16384] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "off_aa", "division_free", "sdpa_cudnn"]
PAIRS = (("division_free", "off"), ("off_aa", "off"), ("division_free", "sdpa_cudnn"), ("off", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    return {"off": (c, {"DIVISION_FREE": False}), "off_aa": (c, {"DIVISION_FREE": False}),
            "division_free": (c, {"DIVISION_FREE": True})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "off_aa", "division_free")))
