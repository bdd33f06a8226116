"""flash_bwd_wgmma with ops/backward_wgmma.PIPELINE (the S^T / dP^T look-ahead: tile it + 1's S^T and dP^T wgmmas
issued in iteration it, ahead of its dK and dQ) against the same tile with the switch off: the served D 64 producer
tile (bm64 bn128 w12 s2, dq_via_producer at its rule), and the look-ahead at stages 3 (bm64 bn128 w12 s3: the producer
a tile further ahead, since the consumers wait for tile it + 1's copies mid-iteration), each launched as attention_backward launches it, beside SDPA's cuDNN backward, on the same inputs (benchmarks/dq_ab.py:
TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved rounds, median, spread = range of the round medians).
The float64 checks: tests/test_backward_wgmma_pipeline_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_pipeline.py [--dtypes bf16] [--head-dims 64]
        [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "pipeline", "pipeline_s3", "sdpa_cudnn"]
PAIRS = (("pipeline", "off"), ("pipeline_s3", "off"), ("pipeline", "sdpa_cudnn"), ("pipeline_s3", "sdpa_cudnn"),
         ("off", "sdpa_cudnn"))
ON = {"PIPELINE": True}


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    return {"off": (c, {}), "pipeline": (c, ON), "pipeline_s3": (c.replace(stages=3), ON)}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "pipeline", "pipeline_s3"), head_dims="64"))
