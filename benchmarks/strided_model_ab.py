"""bench_training.py's decoder step (4 layers, bf16, N 4096, B 2, D 128 causal; q, k, v views of the fused qkv
projection, grad_out a transposed view) in three modes, in one process, alternating off, phase 1, phase 1+2, ...,
each beside SDPA's default (the clock reference of its run); the call and training plans cleared between runs:
  off: ops/backward_wgmma.STRIDED off (the views copied: 20 elementwise copies a step, the gradients' stack
       transposing);
  phase 1: STRIDED on with O contiguous (serve/out_layout.LIKE_Q False): views read and gradients written in place,
       but the model's y.transpose(1, 2).reshape(b, n, w) copies O (4 copies a step);
  phase 1+2: STRIDED on, O laid out like q (the switch's default): that reshape is a view.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/strided_model_ab.py [--runs 6]
"""
import argparse

import bench_training

from autoflash.ops import backward_wgmma
from autoflash.serve import backward_plans, call_plans, out_layout, training_plans

MODES = (("off", False, True), ("phase 1", True, False), ("phase 1+2", True, True))  # (name, STRIDED, LIKE_Q)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="runs, cycling through the modes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for flag in (False, True):  # both backward kernels into the disk cache (forked workers see the flag)
        backward_wgmma.STRIDED = flag
        bench_training.precompile([("bf16", 128, True)], (4096,))
    rows = []
    for i in range(args.runs):
        name, backward_wgmma.STRIDED, out_layout.LIKE_Q = MODES[i % len(MODES)]
        for plans in (backward_plans, call_plans, training_plans):
            plans.clear()
        print(f"model run {i}: {name}", flush=True)  # (the step's line follows: partial results survive a timeout)
        (row,) = bench_training.model_rows(4, 4096, 2, args.rounds, bench_training.REPS)
        rows.append((name, row["ms"]["autoflash"], row["ms"]["sdpa_default"], row["spread"]["autoflash"]))
    print("\n| mode | autoflash ms/step | SDPA default ms/step | SDPA / autoflash | spread (ours) |")
    print("|---|---|---|---|---|")
    for name, ours, sdpa, spread in rows:
        print(f"| {name} | {ours:.2f} | {sdpa:.2f} | {sdpa / ours:.3f}x | {100 * spread:.1f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
