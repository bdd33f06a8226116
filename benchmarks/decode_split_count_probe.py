"""With the merge of the twelfth session (ops/decode_kernels: _combine_lanes, PDL): the served decode call at forced
split counts on the small-batch rows, beside SDPA cuDNN; is the heuristic's count (MIN_SPLIT_KEYS, one slot per SM)
still the best? CUDA-graph replay over rotating input sets, interleaved rounds.

  python benchmarks/decode_split_count_probe.py [--rounds 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_decode import SDPA, ours, rows_named, sdpa, splits_used, time_row  # noqa: E402

ROWS = ("d128 8/1 b1 n8192,d128 8/1 b1 n32768,d64 8/1 b1 n32768,d128 32/8 b1 n8192,d128 32/8 b1 n32768,"
        "d64 32/8 b1 n32768,d128 8/1 b8 n8192,d64 8/1 b8 n32768")
COUNTS = (8, 16, 32, 64, 128)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"{'row':22} {'served':>6} " + " ".join(f"{'ns ' + str(n):>8}" for n in COUNTS) + f" {'cudnn':>8}  (us)")
    for row in rows_named(ROWS):
        label = row.label()
        row.sets = row.make_sets()
        served = splits_used(row)
        impls = {n: ours(row.sets, num_splits=n) for n in COUNTS}
        impls["cudnn"] = sdpa(row.sets, SDPA["cudnn"])
        med = {n: r["us"] for n, r in time_row(row, args.rounds, impls).items()}  # interleaved rounds' medians
        print(f"{label:22} {served:6d} " + " ".join(f"{med[n]:8.2f}" for n in COUNTS) + f" {med['cudnn']:8.2f}",
              flush=True)
        del row.sets
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
