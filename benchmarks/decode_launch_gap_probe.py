"""Where a small decode call's time goes (issue 14's latency-bound rows): CUDA-graph replay of the served
decode call against its split kernel alone, its combine kernel alone and the fused-combine twin of the same
config (<= 32 splits), beside SDPA's cuDNN backend, on the rows bench_decode.py misses by the most.

  python benchmarks/decode_launch_gap_probe.py [--rounds 5] [--rows 'd64 8/1 b8 n8192,...']

If full ~= split + combine, the second launch costs its whole duration (a programmatic dependent launch or a
fused merge can hide part of it); if full ~= split, the combine is already hidden.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench_decode import SDPA, Row, graph_time, ours, rows_named, sdpa  # noqa: E402
from autoflash.ops import decode_launch  # noqa: E402
from autoflash.ops.decode_kernels import FUSED_MAX_SPLITS  # noqa: E402
from autoflash.ops.decode_launch import DecodeProblem  # noqa: E402
from autoflash.serve import decode as decode_api  # noqa: E402

ROWS = ("d64 8/1 b8 n1024,d64 8/1 b8 n8192,d64 8/1 b1 n1024,d128 8/1 b1 n8192,d128 8/1 b1 n32768,"
        "d128 8/1 b8 n1024,d64 32/8 b1 n32768,d128 32/8 b1 n1024,d64 32/8 b64 n1024")


def kernels_alone(row: Row, cfg, splits: int | None = None, rotate: bool = False):
    """Closures launching only the split kernel and only the combine kernel of cfg's plan for row with `splits` splits
    (None: the served count). The split kernel reads the first input set (its K/V then sit in L2), or with `rotate`
    each set in turn (K/V from HBM, as bench_decode times a row); outputs and partials are allocated once."""
    q, k, v = row.sets[0]
    p = DecodeProblem(row.batch, row.heads_q, row.heads_kv, 1, row.seq_k, row.head_dim, True)
    dev = torch.cuda.current_device()
    kernel = decode_api._kernel_for(cfg, dev)
    splits = splits or decode_launch.choose_splits(kernel, p)
    o = torch.empty_like(q)
    lse = torch.empty((p.batch, p.heads_q, 1), dtype=torch.float32, device="cuda")
    n_o, n_l = decode_launch.workspace_sizes(p, splits)
    o_part = torch.zeros(max(n_o, 1), dtype=torch.float32, device="cuda")
    lse_part = torch.zeros(max(n_l, 1), dtype=torch.float32, device="cuda")
    strides = sum((decode_api._token_head_strides(x, "bhsd") for x in (q, k, v, o)), ())
    plan = decode_launch.plan_for(kernel, p, strides, splits, row.head_dim ** -0.5)
    u64 = np.uint64

    def split_args(q, k, v):
        return ((u64(q.data_ptr()), u64(k.data_ptr()), u64(v.data_ptr()), u64(o.data_ptr()), u64(lse.data_ptr()),
                 u64(o_part.data_ptr() if n_o else 0), u64(lse_part.data_ptr() if n_l else 0), u64(0),
                 u64(plan.counters.data.ptr if plan.fused else 0)) + plan.tail + (u64(0),) + plan.paged_tail
                + plan.variant_head + (u64(0), u64(0)) + plan.variant_end)
    sets = itertools.cycle([split_args(*s) for s in (row.sets if rotate else row.sets[:1])])

    def split():
        plan.split_fn(plan.grid, plan.block, next(sets), shared_mem=plan.smem,
                      stream=_stream(torch.cuda.current_stream().cuda_stream))

    def combine():
        plan.combine_fn(plan.combine_grid, plan.combine_block,
                        (u64(o_part.data_ptr()), u64(lse_part.data_ptr()), u64(o.data_ptr()), u64(lse.data_ptr()))
                        + plan.combine_tail + (u64(0),), stream=_stream(torch.cuda.current_stream().cuda_stream))
    return splits, plan.fused, split, combine


def _stream(ptr: int):
    import cupy

    return cupy.cuda.ExternalStream(ptr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", default=ROWS)
    args = ap.parse_args()
    print(f"{'row':22} {'splits':>6} {'fused':>5} {'full us':>8} {'split':>7} {'combine':>7} {'fused-twin':>10} "
          f"{'cudnn':>7} {'full/cudnn':>10} {'spread':>6}  config")
    for row in rows_named(args.rows):
        label = row.label()
        row.sets = row.make_sets()
        p = DecodeProblem(row.batch, row.heads_q, row.heads_kv, 1, row.seq_k, row.head_dim, True)
        cfg = decode_api._choose_config(None, "bf16", p, torch.cuda.current_device())
        splits, fused, split, combine = kernels_alone(row, cfg)
        impls = {"full": ours(row.sets), "split": split, "cudnn": sdpa(row.sets, SDPA["cudnn"])}
        if splits > 1 and not fused:
            impls["combine"] = combine
            if splits <= FUSED_MAX_SPLITS:
                impls["fused_twin"] = ours(row.sets, cfg.replace(fused_combine=True))
        times = {n: [] for n in impls}
        for _ in range(args.rounds):
            for n, fn in impls.items():
                calls = len(row.sets) if n in ("full", "cudnn", "fused_twin") else 64
                times[n].append(graph_time(fn, calls) * 1e6)
        med = {n: statistics.median(t) for n, t in times.items()}
        spread = (max(times["full"]) - min(times["full"])) / med["full"]
        fmt = lambda n: f"{med[n]:.2f}" if n in med else "-"  # noqa: E731
        print(f"{label:22} {splits:6d} {str(fused):>5} {med['full']:8.2f} {fmt('split'):>7} {fmt('combine'):>7} "
              f"{fmt('fused_twin'):>10} {med['cudnn']:7.2f} {med['cudnn'] / med['full']:10.2f} {spread:6.1%}  "
              f"{cfg.name}", flush=True)
        del row.sets
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
