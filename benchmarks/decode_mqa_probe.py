"""Batch-1 MQA decode against the read floor (issue 14's "batch 1, 32k cache >= 0.6x copy"): where the time goes.

read_floor_probe.py (seventeenth session) put the best plain read of 16 MB at 5.4 us (0.72x copy) and of 8 MB at
3.7 us (0.54x), where the served decode of those bytes takes 12.3 / 8.9 us. This probe splits the served call into
what it is made of, all timed like bench_decode's rows (graph replay over rotating input sets: K/V from HBM):
  full (served), full at other split counts and knobs, the split kernel alone (no merge), the same read kernel
  limited to the split kernel's block count, and SDPA cuDNN.

  PYTHONPATH=$PWD:$PWD/benchmarks python3 benchmarks/decode_mqa_probe.py [--rounds 5] [--rows 'd128 8/1 b1 n32768']
"""
from __future__ import annotations

import argparse
import statistics

import torch

from bench_decode import SDPA, graph_time, ours, read_launch, rows_named, sdpa
from decode_launch_gap_probe import kernels_alone
from autoflash.ops import decode_launch
from autoflash.ops.decode_launch import DecodeProblem
from autoflash.serve import decode as decode_api

ROWS = "d128 8/1 b1 n32768,d64 8/1 b1 n32768,d128 8/1 b1 n8192"
KNOBS = ({"stages": 2}, {"stages": 4}, {"block_n": 16}, {"warps": 2}, {"block_n": 16, "warps": 8},
         {"warps": 8, "stages": 2})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", default=ROWS)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for row in rows_named(args.rows):
        row.sets = row.make_sets()
        p = DecodeProblem(row.batch, row.heads_q, row.heads_kv, 1, row.seq_k, row.head_dim, True)
        cfg = decode_api._choose_config(None, "bf16", p, torch.cuda.current_device())
        served = decode_launch.config_splits(cfg, p, sms)
        impls = {f"full served ns{served}": ours(row.sets)}
        for n in (32, 64, 128, 132, 256):
            impls[f"full ns{n}"] = ours(row.sets, num_splits=n)
        for knob in KNOBS:
            try:
                alt = cfg.replace(**knob)
                alt.validate()
            except Exception as exc:  # noqa: BLE001 (ConfigError: the template's rules)
                print(f"  {knob}: invalid ({str(exc)[:80]})")
                continue
            impls[f"full {' '.join(f'{k}={v}' for k, v in knob.items())}"] = ours(row.sets, config=alt)
        for n in sorted({served, 128}):
            impls[f"split alone ns{n}"] = kernels_alone(row, cfg, n, rotate=True)[2]
        for blocks in (64, 128, sms, 8 * sms):
            impls[f"read {blocks} blocks"] = read_launch(row.kv_whole, blocks, 1024 if blocks <= 2 * sms else 256,
                                                         4 if blocks <= 2 * sms else 2)
        impls["cudnn"] = sdpa(row.sets, SDPA["cudnn"])
        times = {n: [] for n in impls}
        for _ in range(args.rounds):  # interleaved rounds
            for n, fn in impls.items():
                if times[n] is None:
                    continue
                try:
                    times[n].append(graph_time(fn, len(row.sets)) * 1e6)
                except Exception as exc:  # a knob the template refuses: say so, drop it
                    print(f"  {n}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
                    times[n] = None
        print(f"\n{row.label()}: {row.bytes / 1e6:.1f} MB, served {cfg.name}, {served} splits")
        print(f"  {'what':28} {'us':>7} {'GB/s':>6} {'spread':>6}")
        for n, ts in times.items():
            if not ts:
                continue
            med = statistics.median(ts)
            print(f"  {n:28} {med:7.2f} {row.bytes / med / 1e3:6.0f} {(max(ts) - min(ts)) / med:6.1%}", flush=True)
        del row.sets, row.kv_whole
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
