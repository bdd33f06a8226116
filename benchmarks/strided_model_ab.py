"""bench_training.py's decoder step (4 layers, bf16, N 4096, B 2, D 128 causal; q, k, v views of the fused qkv
projection, grad_out a transposed view) with ops/backward_wgmma.STRIDED off (the views copied: 20 elementwise
copies a step, the gradients' stack transposing) and on (read and written in place), in one process, alternating
off, on, off, on, each beside SDPA's default (the clock reference of its run); the call and training plans cleared
between runs.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/strided_model_ab.py [--runs 4]
"""
import argparse

import bench_training

from autoflash.ops import backward_wgmma
from autoflash.serve import backward_plans, call_plans, training_plans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4, help="alternating off/on runs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for flag in (False, True):  # both backward kernels into the disk cache (forked workers see the flag)
        backward_wgmma.STRIDED = flag
        bench_training.precompile([("bf16", 128, True)], (4096,))
    rows = []
    for i in range(args.runs):
        backward_wgmma.STRIDED = i % 2 == 1
        for plans in (backward_plans, call_plans, training_plans):
            plans.clear()
        (row,) = bench_training.model_rows(4, 4096, 2, args.rounds, bench_training.REPS)
        rows.append((backward_wgmma.STRIDED, row["ms"]["autoflash"], row["ms"]["sdpa_default"],
                     row["spread"]["autoflash"]))
    print("\n| STRIDED | autoflash ms/step | SDPA default ms/step | SDPA / autoflash | spread (ours) |")
    print("|---|---|---|---|---|")
    for flag, ours, sdpa, spread in rows:
        print(f"| {flag} | {ours:.2f} | {sdpa:.2f} | {sdpa / ours:.3f}x | {100 * spread:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
