"""flash_bwd_mma at D 256 (the served backward there on the H200): the default 2-D layout (warps_q 2: S^T, dP^T over 4
key groups x 2 query halves, dK, dV 16 keys x 128 columns a warp) against warps_q 4 (FlashAttention-2's D 256 layout:
2 key groups x 4 query quarters, dK, dV 32 keys x 64 columns a warp), one and two query buffers, beside SDPA's
FlashAttention-2 backward. First each config's gradients against float64 (ops/backward_gpu.verify: GQA, odd lengths,
causal both alignments), then CUDA-graph replay in interleaved rounds (graph_timing.py), TFLOP/s at 2.5x the forward's
FLOPs, the spread of the round medians.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_d256_layout.py [--rounds 7] [--dtypes bf16]
"""
from __future__ import annotations

import argparse
import math

import torch

from bench_backward import forward_lse
from bwd_mma_source_ab import fa2_backward, plan_impl
from graph_timing import Impl, measure

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.loaded import LoadedKernel
from autoflash.ops.backward_gpu import verify
from autoflash.ops.backward_kernels import TEMPLATE, BackwardProblem

LAYOUTS = {"wq2_s2": (2, 2), "wq4_s2": (4, 2), "wq4_s1": (4, 1)}  # (warps_q, stages), bm64 bn64 w8
CHECKS = [(1, 4, 2, 1000, 1000, False, 0), (2, 2, 2, 777, 300, True, 0), (1, 4, 1, 300, 777, True, 477),
          (1, 2, 2, 65, 4097, False, 0)]  # batch, heads_q, heads_kv, seq_q, seq_k, causal, causal_offset


def config(dtype: str, causal: bool, warps_q: int, stages: int):
    key = dict(dtype=dtype, head_dim=256, causal=causal, deterministic=False, window=False, softcap=False,
               sinks=False, alibi=False)
    return TEMPLATE.config("sm_90", key, block_m=64, block_n=64, warps=8, stages=stages, warps_q=warps_q)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtypes", default="bf16")
    args = ap.parse_args()
    for dtype in args.dtypes.split(","):
        for name, (wq, st) in LAYOUTS.items():
            for b, hq, hkv, nq, nk, causal, off in CHECKS:
                kernel = LoadedKernel(compile_kernel(config(dtype, causal, wq, st)))
                p = BackwardProblem(b, hq, hkv, nq, nk, 256, causal, causal_offset=off)
                c = verify(kernel, p, seed=nq + nk)
                print(f"check {dtype} {name} b{b} h{hq}/{hkv} q{nq} k{nk} causal={causal} off={off}: "
                      f"{'pass' if c.passed else 'FAIL'} rel {c.rel_error:.2e}", flush=True)
    print(f"{'row':28} " + " ".join(f"{n:>14}" for n in LAYOUTS) + f" {'fa2':>6} " +
          " ".join(f"{n + '/fa2':>11}" for n in LAYOUTS), flush=True)
    for dtype in args.dtypes.split(","):
        for causal in (False, True):
            for n in (4096, 16384):
                b, h = 16384 // n, 2048 // 256
                tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
                g = torch.Generator(device="cuda").manual_seed(n)
                q, k, v, dout = (torch.randn(b, h, n, 256, device="cuda", generator=g).to(tdt) for _ in range(4))
                scale = 1 / math.sqrt(256)
                out, lse, _ = forward_lse(q, k, v, causal, scale)
                p = BackwardProblem(b, h, h, n, n, 256, causal)
                impls = []
                for name, (wq, st) in LAYOUTS.items():
                    kernel = LoadedKernel(compile_kernel(config(dtype, causal, wq, st)))
                    impls.append(plan_impl(name, kernel, p, scale, (q, k, v, out, lse, dout))[0])
                impls.append(Impl("fa2", fa2_backward(q, k, v, dout, causal, scale), calls=3, work=p.flops()))
                res = measure(impls, args.rounds)
                rate = {k: r["rate"] / 1e12 for k, r in res.items() if r.get("rate")}
                cells = " ".join(f"{rate[n]:6.0f} ({res[n]['spread']:.1%})" for n in LAYOUTS)
                label = f"{dtype} d256 n{n} {'causal' if causal else 'non-causal'}"
                print(f"{label:28} {cells} {rate.get('fa2', 0):6.0f} " +
                      " ".join(f"{rate[n] / rate.get('fa2', math.nan):11.3f}" for n in LAYOUTS), flush=True)


if __name__ == "__main__":
    main()
