"""flash_bwd_wgmma's PLAIN_STAGES and EARLY_RELEASE switches (ops/backward_wgmma.py, off by default) timed on the
served tile (bm64 bn128 w12, dq_via_producer=2 with the read lag): s2 (served), s2 with the early release, stages 3
with the plain loop, and both, beside SDPA's cuDNN backward, in one run: bf16/fp16, D 64/128 (stages 3: D 64 only),
causal and not, N 4096 by default; TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved rounds, median,
spread = range of the round medians (float64 checks: tests/test_backward_wgmma_release_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_bwd_release.py [--dtypes bf16,fp16] [--head-dims 64,128]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["s2", "s2_early", "s3_plain", "s3_plain_early", "sdpa_cudnn"]
PAIRS = (("s2_early", "s2"), ("s3_plain", "s2"), ("s3_plain_early", "s2"), ("s2", "sdpa_cudnn"),
         ("s2_early", "sdpa_cudnn"), ("s3_plain", "sdpa_cudnn"), ("s3_plain_early", "sdpa_cudnn"))
VARIANTS = {"s2": (2, {}), "s2_early": (2, {"EARLY_RELEASE": True}), "s3_plain": (3, {"PLAIN_STAGES": True}),
            "s3_plain_early": (3, {"PLAIN_STAGES": True, "EARLY_RELEASE": True})}


def configs(arch, dtype, d, causal):
    """name -> (config, switches): the served producer tile at stages 2 / 3 with the switches of VARIANTS."""
    out = {}
    for name, (stages, switches) in VARIANTS.items():
        c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                         stages=stages, warps_q=1)
        with dq_ab.switched(switches):
            if c.problems() or WGMMA.dq_mode(c) != 2:  # D 128 stages 3: no room for the dQ staging tiles
                continue
        out[name] = (c, switches)
    return out


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, tuple(VARIANTS)))
