"""What a backward block costs besides its query tiles: the main kernel's K/V tiles (blocks) held fixed (bf16 D 64
non-causal, 4 x 32 heads, seq_k 4096: 4096 blocks of 128 keys; --head-dim 128: 16 heads) while seq_q, the query tiles each block loops over,
runs 1024..16384. By graph replay (graph_timing.py, interleaved rounds), the served backward, the same tile with the
named ops/backward_wgmma switches (--alt, as bench_backward_graph.py's), and SDPA's cuDNN backward; each column's
times are fitted by least squares to T = fixed + per_row * seq_q: `fixed` is what the blocks cost whatever the
number of query tiles (launch, K/V loads, the pipeline's fill and drain, dK / dV stores; the preprocess and dQ
conversion scale with seq_q), printed in us and as a share of the seq_q 4096 call.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bwd_unit_cost.py [--alt 64x128x12x2:SWITCH] [--rounds 7]
"""
from __future__ import annotations

import argparse
import math

import torch

from bench_backward import forward_lse, served_config
from bench_backward_graph import alt_impl, config_impl, cudnn_impl
from graph_timing import measure

from autoflash.kernels.device import device_arch
from autoflash.ops.backward_kernels import BackwardProblem


def fit(xs, ys):
    """Least-squares (intercept, slope)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seq-k", type=int, default=4096)
    ap.add_argument("--seqs-q", default="1024,2048,4096,8192,16384")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--head-dim", type=int, default=64, help="64 or 128 (2048 / D heads, as the bar's rows)")
    ap.add_argument("--alt", default="")
    args = ap.parse_args()
    arch = device_arch(torch.cuda.current_device())[0]
    b, d, nk = 4, args.head_dim, args.seq_k
    h = 2048 // d
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    key = dict(dtype=args.dtype, head_dim=d, causal=False, deterministic=False)
    alts = [(a.split(":") + [""])[:2] for a in args.alt.split(",")] if args.alt else []
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; {args.dtype} D {d} non-causal, B {b} x H {h}, "
          f"seq_k {nk}; us a backward call, CUDA-graph replay, {args.rounds} rounds (spread of the round medians)")
    for i, (tile, sw) in enumerate(alts):
        print(f"# alt{i + 1}: {tile}" + (f" with {sw}" if sw else ""))
    times = {}
    for nq in (int(x) for x in args.seqs_q.split(",")):
        g = torch.Generator(device="cuda").manual_seed(nq)
        q, dout = (torch.randn(b, h, nq, d, device="cuda", generator=g).to(tdt) for _ in range(2))
        k, v = (torch.randn(b, h, nk, d, device="cuda", generator=g).to(tdt) for _ in range(2))
        scale = 1 / math.sqrt(d)
        out, lse, _ = forward_lse(q, k, v, False, scale)
        p, tensors = BackwardProblem(b, h, h, nq, nk, d, False), (q, k, v, out, lse, dout)
        impls = [config_impl("served", served_config(arch, key, nk), p, scale, tensors),
                 cudnn_impl(q, k, v, dout, False, p.flops())]
        impls += [alt_impl(f"alt{i + 1}", tile, sw, arch, key, p, scale, tensors) for i, (tile, sw) in enumerate(alts)]
        res = measure(impls, args.rounds)
        line = f"seq_q {nq:6d}:"
        for name, r in res.items():
            if r.get("s"):
                times.setdefault(name, []).append((nq, r["s"] * 1e6))
                line += f"  {name} {r['s'] * 1e6:8.1f} ({r['spread']:.1%})"
            else:
                line += f"  {name} n/a ({r.get('na')})"
        print(line, flush=True)
        del q, k, v, dout, out, lse, impls
        torch.cuda.empty_cache()
    print("\n| column | fixed us | us per 1k query rows | fixed share at seq_q 4096 |\n|---|---|---|---|")
    for name, pts in times.items():
        a, s = fit([x for x, _ in pts], [y for _, y in pts])
        print(f"| {name} | {a:.1f} | {s * 1e3:.1f} | {a / (a + s * 4096):.1%} |")


if __name__ == "__main__":
    main()
