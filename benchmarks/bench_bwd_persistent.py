"""flash_bwd_wgmma's PERSISTENT switch (ops/backward_wgmma.py: one CTA per SM walking the (K/V tile, head, batch) units,
causal items as K/V tile pairs) timed on the served tile against the same tile on today's grid (one CTA per K/V tile,
head, batch), beside SDPA's cuDNN backward, in one run: bf16/fp16, D 64/128, causal and not, N 4096 by default
(B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved rounds, median, spread =
range of the round medians (bench_backward.time_interleaved); each kernel's largest relative gradient error against
SDPA's flash backward (the float64 checks: tests/test_backward_wgmma_persistent_gpu.py). The switch applies to the
D 64 producer tile only: the D 128 rows run the same kernel twice (an A/A control of the spread).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_bwd_persistent.py [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["served", "persistent", "sdpa_cudnn"]
PAIRS = (("persistent", "served"), ("persistent", "sdpa_cudnn"), ("served", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, switches): the served tile on today's grid, and with PERSISTENT set."""
    c = WGMMA.default(build_arch(WGMMA.archs, arch), key(dtype, d, causal))
    return {"served": (c, {}), "persistent": (c, {"PERSISTENT": True})}


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("served", "persistent")))
