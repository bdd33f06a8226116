"""flash_bwd_wgmma with ops/backward_wgmma.LSE_DELTA_VEC (lse2 and delta copied into shared memory permuted, read with
one 16-byte load per two 8-query column blocks: 8 LDS.128 a tile instead of 16 LDS.64) against the switch off and an
A/A copy of off: the served tile (bm64 bn128 w12 s2, dq_via_producer at its rule), each launched as
attention_backward launches it, beside SDPA's cuDNN backward, on the same inputs (benchmarks/dq_ab.py: TFLOP/s at 2.5x
the forward's FLOPs, CUDA events, interleaved rounds, median, spread = range of the round medians). Rows: every
dtype x head dim x causal at N 4096; at longer N (--seqs 4096,16384) only D 64 non-causal, issue 16's weakest row.
O and LSE come from SDPA's flash forward (bench_backward.forward_lse: no float32 N^2 forward, any consistent O and
LSE time the same). The float64 checks: tests/test_backward_wgmma_lse_delta_vec_gpu.py.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_lse_delta_vec.py [--dtypes bf16]
        [--head-dims 64,128] [--seqs 4096,16384] [--tokens 16384] [--precompile]
"""
import math
import sys

import torch

import dq_ab
from bench_backward import sdpa_backward, forward_lse
from bench_backward_wgmma import DTYPES, key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["off", "off_aa", "vec", "sdpa_cudnn"]
PAIRS = (("vec", "off"), ("vec", "off_aa"), ("off_aa", "off"), ("vec", "sdpa_cudnn"), ("off_aa", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    # the switch runs between the two copies of off in every round (the second of two equal kernels ran up to 1.7 %
    # faster in the thirteenth session's fourth call: an order effect)
    return {"off": (c, {"LSE_DELTA_VEC": False}), "vec": (c, {"LSE_DELTA_VEC": True}),
            "off_aa": (c, {"LSE_DELTA_VEC": False})}


def problems(dtypes, head_dims, seqs: str, tokens: int = 16384):
    """dq_ab's rows: (dtype, d, n, causal) and q, k, v, dout, O, LSE, SDPA flash's gradients (the sanity check); past
    N 4096 only D 64 non-causal."""
    for dtype in dtypes:
        for d in head_dims:
            for n in (int(x) for x in seqs.split(",")):
                for causal in (False, True):
                    if n > 4096 and (d != 64 or causal):
                        continue
                    b, h = max(1, tokens // n), 2048 // d
                    torch.manual_seed(0)
                    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=DTYPES[dtype]) for _ in range(4))
                    out, lse, source = forward_lse(q, k, v, causal, 1 / math.sqrt(d), source="sdpa")
                    yield (dtype, d, n, causal), (q, k, v, dout, out, lse, sdpa_backward("flash", q, k, v, dout,
                                                                                        causal)[1])


if __name__ == "__main__":
    dq_ab.problems = problems  # (dq_ab.main times the rows this yields)
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("off", "off_aa", "vec")))
