"""Does where the backward's outputs and workspace sit in memory move its speed? The served backward of one row
(default bf16 D 128 N 4096 non-causal, the bench's inputs) launched on the same inputs with dq, dk, dv and the
workspace (the fp32 dQ accumulator among it) carved out of one pool at several byte offsets, each offset twice (two
pools: an A/A pair), all timed by graph replay in interleaved rounds. Why (benchmarks/NOTES.md, s21c / s22e): an A/A
copy of the served column read 2-7 % apart from it, and the first-built column read low; if placement is the cause,
these columns spread the same way and an offset that reads fast is a lever, else the spread is the clock's.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bwd_placement_probe.py [--row bf16:128:4096:false] [--rounds 11]
"""
from __future__ import annotations

import argparse

import torch

from bench_backward import served_config
from bwd_mma_source_ab import current_stream, row_inputs
from graph_timing import Impl, measure

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel
from autoflash.ops.backward_gpu import launch_plan

OFFSETS = (0, 4096, 65536, 1 << 20, (3 << 20) + 4096)  # bytes past a 2 MB-aligned pool start


def placed_impl(name: str, plan, tensors: tuple, offset: int, work: float) -> Impl:
    """The plan's launches with dq, dk, dv (laid out as q, k, v) and the workspace placed `offset` bytes into a pool
    of their own, each piece 256-byte aligned after the one before."""
    sizes = [x.numel() * x.element_size() for x in tensors[:3]] + [plan.workspace_bytes]
    pool = torch.empty(offset + sum(-(-s // 256) * 256 for s in sizes) + (2 << 20), dtype=torch.uint8, device="cuda")
    at = -(-pool.data_ptr() // (2 << 20)) * (2 << 20) + offset
    ptrs = []
    for size in sizes:
        ptrs.append(at)
        at += -(-size // 256) * 256
    args = [x.data_ptr() for x in tensors] + ptrs
    return Impl(name, lambda: (pool, plan(*args, current_stream()))[1], calls=3, work=work)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", default="bf16:128:4096:false", help="dtype:head_dim:seq:causal")
    ap.add_argument("--rounds", type=int, default=11)
    args = ap.parse_args()
    dtype, d, n, causal = args.row.split(":")
    key = dict(dtype=dtype, head_dim=int(d), causal=causal == "true", deterministic=False)
    q, k, v, dout, out, lse, scale, p = row_inputs(dtype, int(d), int(n), key["causal"])
    cfg = served_config(device_arch(torch.cuda.current_device())[0], key, int(n))
    plan = launch_plan(LoadedKernel(compile_kernel(cfg)), p, scale)
    tensors = (q, k, v, out, lse, dout)
    impls = [placed_impl(f"+{off}{'ab'[copy]}", plan, tensors, off, p.flops()) for off in OFFSETS for copy in (0, 1)]
    res = measure(impls, args.rounds)
    base = res[impls[0].name]["s"]
    print(f"# {torch.cuda.get_device_name()}: {cfg.name}, {args.row}; backward TFLOP/s by graph replay, {args.rounds} "
          "rounds (spread of the round medians); dq, dk, dv and the workspace at +offset bytes, two pools each")
    print("| placement | TFLOP/s | spread | vs +0a |\n|---|---|---|---|")
    for impl in impls:
        r = res[impl.name]
        print(f"| {impl.name} | {r['rate'] / 1e12:.0f} | {100 * r['spread']:.1f}% | {base / r['s']:.3f} |")


if __name__ == "__main__":
    main()
