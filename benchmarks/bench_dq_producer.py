"""flash_bwd_wgmma's dq_via_producer knob (ops/backward_wgmma.py; BackwardConfig) on and off on the same tiles,
in one run: the producer default (stages 2, "ws") and the pipelined stages 3 ("pipe", D 64 only: at D 128
its staging tile does not fit), each with the consumers' own dQ adds and with the producer's bulk reductions
(the "_dqp" columns), beside SDPA's cuDNN backward. bf16/fp16, D 128/64, causal and not, N 4096 by default
(B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved rounds, median,
spread = range of the round medians (bench_backward.time_interleaved); each kernel's largest relative
gradient error against SDPA's flash backward as a sanity check (tests/test_backward_wgmma_dq_producer_gpu.py
holds the float64 checks).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_producer.py [--dtypes bf16,fp16]
        [--head-dims 128,64] [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["ws", "ws_dqp", "pipe", "pipe_dqp", "sdpa_cudnn"]
PAIRS = (("ws_dqp", "ws"), ("pipe_dqp", "pipe"), ("pipe_dqp", "ws"), ("ws_dqp", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, no switches): the producer tile at stages 2 and 3, each with the consumers' adds
    (dq_via_producer 0) and the producer's per-row bulk reductions (1), spelled -1 where the rule gives that value,
    where valid."""
    wg_arch = build_arch(WGMMA.archs, arch)
    out = {}
    for name, stages in (("ws", 2), ("pipe", 3)):
        c = WGMMA.config(wg_arch, key(dtype, d, causal), block_m=64, block_n=128, warps=12, stages=stages, warps_q=1)
        for suffix, mode in (("", 0), ("_dqp", 1)):
            x = c if WGMMA.dq_mode(c) == mode else c.replace(dq_via_producer=mode)
            if not x.problems():
                out[name + suffix] = (x, {})
    return out


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("ws", "ws_dqp"), head_dims="128,64"))
