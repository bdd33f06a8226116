"""Which GPU kernels each backward runs, and for how long (torch.profiler, CUDA activity): SDPA's cuDNN backward beside
the served autoflash backward and flash_bwd_mma's and FA2's, bf16, rows as bench_backward.py's. Per kernel: its name
(shortened), launches per call and mean microseconds; the sum per call. For the question where cuDNN's kernel-level
lead comes from (benchmarks/NOTES.md, nineteenth session).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/backward_kernels_probe.py [--rows 64:4096,128:4096] [--calls 5]
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from bench_backward import mma_config, sdpa_backward, served_config
from bench_backward_graph import config_impl
from bwd_mma_source_ab import fa2_backward, row_inputs

from autoflash.kernels.device import device_arch


def kernels(fn, calls: int) -> list[tuple[str, float, float]]:
    """(name, launches per call, mean us) of the CUDA kernels `calls` calls of fn run, after a warm-up."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    out = []
    for e in prof.key_averages():  # (CUDA activity only: kernels and memsets/copies, no CPU ops)
        total = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if e.count and total > 0:
            out.append((e.key[:90], e.count / calls, total / e.count))
    return sorted(out, key=lambda x: -x[1] * x[2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="64:4096,128:4096", help="D:N pairs (non-causal, bf16)")
    ap.add_argument("--calls", type=int, default=5)
    args = ap.parse_args()
    arch = device_arch(torch.cuda.current_device())[0]
    for item in args.rows.split(","):
        d, n = (int(x) for x in item.split(":"))
        q, k, v, dout, out, lse, scale, p = row_inputs("bf16", d, n, False)
        key = dict(dtype="bf16", head_dim=d, causal=False, deterministic=False)
        tensors = (q, k, v, out, lse, dout)
        runs = {"served": config_impl("served", served_config(arch, key, n), p, scale, tensors).kernel,
                "mma": config_impl("mma", mma_config(arch, key, n)[0], p, scale, tensors).kernel,
                "cudnn": sdpa_backward("cudnn", q, k, v, dout, False)[0],
                "fa2": fa2_backward(q, k, v, dout, False, scale)}
        for name, fn in runs.items():
            if fn is None:
                continue
            ks = kernels(fn, args.calls)
            print(f"\n## bf16 D {d} N {n} non-causal, {name}: {sum(c * t for _, c, t in ks):.1f} us of kernels a call")
            for kname, c, t in ks:
                print(f"  {t:9.1f} us x {c:g}  {kname}")


if __name__ == "__main__":
    main()
