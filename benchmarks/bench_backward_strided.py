"""flash_bwd_wgmma with ops/backward_wgmma.STRIDED on contiguous inputs, an A/A of the stride arithmetic: the served
tile (bm64 bn128 w12 s2, tuned_configs/sm_90.json) rendered without the stride arguments ("contiguous") and with them
("strided", passed contiguous strides), launched as attention_backward launches each, beside SDPA's cuDNN backward,
on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved rounds,
median, spread = range of the round medians). The views themselves: tests/test_backward_strided_gpu.py and the
training step (benchmarks/backward_strided_run.sh).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_strided.py [--dtypes bf16] [--head-dims 64,128]
        [--seqs 4096] [--precompile]
"""
import dataclasses
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["contiguous", "strided", "sdpa_cudnn"]
PAIRS = (("strided", "contiguous"), ("strided", "sdpa_cudnn"), ("contiguous", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    return {"contiguous": (c, {}), "strided": (dataclasses.replace(c, strided=True), {})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("contiguous", "strided")))
