"""_combine_lanes' block size (ops/decode_kernels.LANES_WARPS: its warps loop over the float4 columns) on the decode
rows it serves with the most warps: the served call at caps of 4, 8, 16 and 32 warps, cuDNN in the same rounds.
CUDA-graph replay over rotating input sets, interleaved rounds.  python benchmarks/decode_lanes_warps_ab.py"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_decode import SDPA, graph_time, ours, rows_named, sdpa, splits_used  # noqa: E402
from autoflash.ops import decode_kernels  # noqa: E402
from autoflash.serve import decode as decode_api  # noqa: E402

ROWS = "d128 8/1 b1 n8192,d64 8/1 b1 n8192,d128 8/1 b8 n8192,d128 32/8 b1 n1024,d128 8/1 b1 n32768"
CAPS = (4, 8, 16, 32)


def capped(sets, cap):
    call = ours(sets)

    def run():
        decode_kernels.LANES_WARPS = cap
        decode_api._kernel_for.cache_clear()  # new plans, whose combine block follows the cap
        return graph_time(call, len(sets))
    return run


def main():
    print(f"{'row':22} {'splits':>6} " + " ".join(f"{'cap ' + str(c):>9}" for c in CAPS) + f" {'cudnn':>9}  (us)")
    for row in rows_named(ROWS):
        sets = row.make_sets()
        row.sets = sets
        impls = {c: capped(sets, c) for c in CAPS}
        cudnn = sdpa(sets, SDPA["cudnn"])
        impls["cudnn"] = lambda calls=len(sets): graph_time(cudnn, calls)
        times = {n: [] for n in impls}
        for _ in range(5):
            for n, fn in impls.items():
                times[n].append(fn() * 1e6)
        med = {n: statistics.median(t) for n, t in times.items()}
        print(f"{row.label():22} {splits_used(row):6d} " + " ".join(f"{med[c]:9.2f}" for c in CAPS)
              + f" {med['cudnn']:9.2f}", flush=True)
        del row.sets, sets
        torch.cuda.empty_cache()
    decode_kernels.LANES_WARPS = 32


if __name__ == "__main__":
    main()
