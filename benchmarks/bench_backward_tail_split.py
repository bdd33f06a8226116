"""flash_bwd_wgmma with ops/backward_wgmma.TAIL_SPLIT (the K/V tiles past the last whole wave split into parts that
fill it, their dK, dV summed in fp32) against the switch off and an A/A copy of off: the served tile, each launched as
attention_backward launches it, beside SDPA's cuDNN backward (benchmarks/dq_ab.py: TFLOP/s at 2.5x the forward's
FLOPs, CUDA events, interleaved rounds, median, spread = range of the round medians). Float64 checks:
tests/test_backward_wgmma_tail_split_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_tail_split.py [--dtypes bf16] [--head-dims 64]
        [--seqs 4096,16384] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "split", "off_aa", "sdpa_cudnn"]
PAIRS = (("split", "off"), ("split", "off_aa"), ("off_aa", "off"), ("split", "sdpa_cudnn"), ("off", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.default(build_arch(WGMMA.archs, arch), key(dtype, d, causal))
    # the switch runs between the two copies of off in every round (order effects of up to 1.7 % seen before)
    return {"off": (c, {"TAIL_SPLIT": False}), "split": (c, {"TAIL_SPLIT": True}), "off_aa": (c, {"TAIL_SPLIT": False})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "split", "off_aa"), head_dims="64"))
