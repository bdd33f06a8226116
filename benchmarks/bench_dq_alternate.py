"""flash_bwd_wgmma's DQ_ALTERNATE switch (ops/backward_wgmma.py: at D 64's producer tile, query tile it's dQ on
consumer warpgroup it % 2 instead of always the first) timed against the same tile without it, each with the
consumers' own dQ adds and with dq_via_producer=1 ("_dqp"), beside SDPA's cuDNN backward, in one run: bf16/fp16,
D 64, causal and not, N 4096 by default (B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA
events, interleaved rounds, median, spread = range of the round medians (bench_backward.time_interleaved); each
kernel's largest relative gradient error against SDPA's flash backward as a sanity check (the float64 checks:
tests/test_backward_wgmma_dq_alternate_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_alternate.py [--dtypes bf16,fp16] [--seqs 4096]
        [--precompile]  (--head-dims: 64 only)
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["ws", "ws_alt", "ws_dqp", "ws_alt_dqp", "sdpa_cudnn"]
PAIRS = (("ws_alt", "ws"), ("ws_alt_dqp", "ws_dqp"), ("ws_alt_dqp", "ws"), ("ws_alt", "sdpa_cudnn"),
         ("ws_alt_dqp", "sdpa_cudnn"), ("ws", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, switches): the D 64 producer tile (the served default's tiles) with and without
    DQ_ALTERNATE, with the consumers' adds (dq_via_producer 0) and with dq_via_producer=1."""
    assert d == 64, "DQ_ALTERNATE applies to D 64's producer tile only"
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, 64, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    out = {}
    for suffix, mode in (("", 0), ("_dqp", 1)):
        x = c if WGMMA.dq_mode(c) == mode else c.replace(dq_via_producer=mode)
        for alt_name, alternate in (("", False), ("_alt", True)):
            with dq_ab.switched({"DQ_ALTERNATE": alternate}):
                assert not x.problems() and WGMMA.alternates_dq(x) == alternate, x.name
            out["ws" + alt_name + suffix] = (x, {"DQ_ALTERNATE": alternate})
    return out


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("ws", "ws_alt", "ws_alt_dqp"), head_dims="64"))
