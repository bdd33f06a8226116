"""One split or two on grids that fill half the SMs (64 blocks on 132): our decode at fixed split counts
against SDPA cuDNN, graph replay, interleaved rounds (bench_decode's method and rows).

  python benchmarks/decode_split_probe.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decode import SDPA, Row, graph_time, ours, sdpa  # noqa: E402

ROWS = ((64, 32, 8, 8, 1024), (64, 8, 1, 64, 1024), (128, 32, 8, 8, 1024), (128, 8, 1, 64, 1024),
        (64, 32, 8, 8, 8192), (128, 32, 8, 8, 8192), (64, 8, 1, 64, 8192), (128, 8, 1, 64, 4096))
SPLITS = (1, 2, 4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{'row':24} " + " ".join(f"{f'ns{s} GB/s':>10}" for s in SPLITS) + f" {'cudnn':>7}  spread(ns1, ns2)")
    for d, hq, hkv, b, n in ROWS:
        row = Row(b, hq, hkv, n, d)
        sets = row.make_sets()
        impls = {**{s: ours(sets, num_splits=s) for s in SPLITS}, "cudnn": sdpa(sets, SDPA["cudnn"])}
        times = {k: [] for k in impls}
        for _ in range(args.rounds):
            for k, fn in impls.items():
                times[k].append(graph_time(fn, len(sets)))
        gbps = {k: row.bytes / statistics.median(t) / 1e9 for k, t in times.items()}
        spread = [(max(times[s]) - min(times[s])) / statistics.median(times[s]) for s in (1, 2)]
        print(f"{row.label():24} " + " ".join(f"{gbps[s]:10.0f}" for s in SPLITS) + f" {gbps['cudnn']:7.0f}  "
              f"{spread[0]:.1%} {spread[1]:.1%}", flush=True)


if __name__ == "__main__":
    main()
