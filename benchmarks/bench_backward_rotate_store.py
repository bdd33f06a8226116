"""flash_bwd_wgmma with ops/backward_wgmma.Q_ROTATE (each block's query tiles from tile kv_tile on) and DQ_FIRST_STORE
(dq_accum not zeroed: the first block at a query tile stores its dQ, the others add after it), each and both, against
the switches off and an A/A copy of off: the served tile, each launched as attention_backward launches it (the
preprocess, main kernel and conversion), beside SDPA's cuDNN backward (benchmarks/dq_ab.py: TFLOP/s at 2.5x the
forward's FLOPs, CUDA events, interleaved rounds, median, spread = range of the round medians). Non-causal rows (the
switches apply to TAIL_SPLIT's grids only). Float64 checks: tests/test_backward_wgmma_rotate_store_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_rotate_store.py --causal false [--dtypes bf16]
        [--head-dims 64,128] [--seqs 4096,16384] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "rotate", "store", "both", "off_aa", "sdpa_cudnn"]
PAIRS = (("rotate", "off"), ("store", "off"), ("both", "off"), ("off_aa", "off"), ("both", "sdpa_cudnn"),
         ("off", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.default(build_arch(WGMMA.archs, arch), key(dtype, d, causal))
    switch = lambda rotate, store: (c, {"Q_ROTATE": rotate, "DQ_FIRST_STORE": store})  # noqa: E731
    # the switched kernels run between the two copies of off in every round (order effects of up to 1.7 % seen before)
    return {"off": switch(False, False), "rotate": switch(True, False), "store": switch(False, True),
            "both": switch(True, True), "off_aa": switch(False, False)}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "rotate", "store", "both", "off_aa")))
