"""flash_bwd_wgmma's dq_via_producer=2 (ops/backward_wgmma.py: the staging tile unpadded and each query tile's dQ
reduced by ONE bulk op instead of one per row, dq_via_producer=1) timed on the producer tile (bm64 bn128 w12
s2, the served default) against the same tile with dq_via_producer's per-row ops ("dqp_rows") and with the
consumers' own red.global adds ("adds"), beside SDPA's cuDNN backward, in one run: bf16/fp16, D 64/128, causal and
not, N 4096 by default (B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved
rounds, median, spread = range of the round medians (bench_backward.time_interleaved); each kernel's largest
relative gradient error against SDPA's flash backward (the float64 checks: tests/test_backward_wgmma_dq_tile_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_tile_reduce.py [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["adds", "dqp_rows", "dqp_tile", "sdpa_cudnn"]
PAIRS = (("dqp_tile", "dqp_rows"), ("dqp_tile", "adds"), ("dqp_rows", "adds"), ("dqp_tile", "sdpa_cudnn"),
         ("adds", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, no switches): the producer tile with dq_via_producer 0, 1 (a bulk op a row), 2 (a bulk op a
    tile), spelled -1 where the rule gives that value."""
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    out = {}
    for name, mode in (("adds", 0), ("dqp_rows", 1), ("dqp_tile", 2)):
        x = c if WGMMA.dq_mode(c) == mode else c.replace(dq_via_producer=mode)
        assert not x.problems(), (x.name, x.problems())
        out[name] = (x, {})
    return out


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("adds", "dqp_rows", "dqp_tile")))
