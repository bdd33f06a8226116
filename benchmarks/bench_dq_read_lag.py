"""flash_bwd_wgmma's DQ_READ_LAG switch (ops/backward_wgmma.py, off by default: the producer's dQ thread waits for
the read of the bulk reduction it just issued; on: for the previous tile's, then frees that buffer) timed on the
served tile (bm64 bn128 w12, dq_via_producer=2 by the rule) at stages 2 and, at D 64, 3 (the tuned D 64 entries'),
beside SDPA's cuDNN backward, in one run: bf16/fp16, D 64/128, causal and not, N 4096 by default; TFLOP/s at 2.5x
the forward's FLOPs; CUDA events, interleaved rounds, median, spread = range of the round medians; each kernel's
largest relative gradient error against SDPA's flash backward (float64 checks: tests/test_backward_wgmma_read_lag_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_read_lag.py [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["s2", "s2_lag", "s3", "s3_lag", "sdpa_cudnn"]
PAIRS = (("s2_lag", "s2"), ("s3_lag", "s3"), ("s3", "s2"), ("s2_lag", "sdpa_cudnn"), ("s3_lag", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, switches): the served producer tile (the rule's dQ path) at stages 2 and 3, switch off / on."""
    out = {}
    for stages in (2, 3):
        c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                         stages=stages, warps_q=1)
        if c.problems() or WGMMA.dq_mode(c) != 2:  # D 128 stages 3: no room for the staging tiles
            continue
        out[f"s{stages}"] = (c, {})
        out[f"s{stages}_lag"] = (c, {"DQ_READ_LAG": True})
    return out


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("s2", "s2_lag", "s3", "s3_lag")))
