"""flash_bwd_wgmma's UNIFORM_WG (ops/backward_wgmma.py, off; issue 16: the main kernel's warpgroup index by a lane-0
shuffle, so the S^T / dP^T K/V descriptors and the dQ wgmma's descriptors stay in uniform registers) timed against
the served kernel: "served" (attention_backward's config for the key, switch off), "uwg" (the same config compiled
with the switch on), "served2" (the served kernel again: the A/A control) and SDPA's cuDNN backward, in one run:
bf16/fp16, D 64/128, causal and not, N 4096 by default (B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's
FLOPs; each whole backward call (preprocess, main, dQ conversion) as attention_backward launches it, CUDA events,
synchronised interleaved rounds, median, spread = range of the round medians (benchmarks/dq_ab.py); each kernel's
largest relative gradient error against SDPA's flash backward (the float64 and off-vs-on bitwise checks:
tests/test_backward_wgmma_uniform_wg_gpu.py). "uwg" is switch value AUTOFLASH_UNIFORM_WG_VALUE (1 to 4; default 1;
benchmarks/bwd_uniform_wg_pick_run.sh sets the value benchmarks/bwd_uniform_wg_pick.py picked).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_bwd_uniform_wg.py [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096] [--precompile]
"""
import os
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.ops.backward_wgmma import serving_config
from autoflash.serve.autograd import _served_config

NAMES = ["served", "uwg", "served2", "sdpa_cudnn"]
VALUE = int(os.environ.get("AUTOFLASH_UNIFORM_WG_VALUE", "1"))
# the length whose served config is timed (tuned_configs/ buckets 4096 and 16384 hold the same tile for bf16 D 128,
# the N 16384 rows; D 64 non-causal's is stages 3, pipelined)
SERVED_AT = 4096
PAIRS = (("uwg", "served"), ("served2", "served"), ("uwg", "sdpa_cudnn"), ("served", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, switches): the config attention_backward serves at N SERVED_AT (its tuned entry for this GPU,
    else the default), with the switch off, on, and off again."""
    c = _served_config(0, key(dtype, d, causal), SERVED_AT)
    assert serving_config(arch, key(dtype, d, causal)) is not None and not c.problems(), (dtype, d, causal)
    return {"served": (c, {"UNIFORM_WG": False}), "uwg": (c, {"UNIFORM_WG": VALUE}),
            "served2": (c, {"UNIFORM_WG": False})}


if __name__ == "__main__":
    print(f"# uwg = UNIFORM_WG {VALUE}", flush=True)
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("served", "uwg", "served2")))
