"""How fast can one kernel read B bytes on this GPU, at the sizes of the small decode rows (issue 14)?

Issue 14 asks batch 1 with a 32k cache for >= 0.6x the copy bandwidth; at MQA (one KV head) that is 16 MB of
K/V at D 128 and 8 MB at D 64. bench_decode's "rd same" column was PyTorch's x.sum() over the same bytes (0.32x /
0.19x there), one reduction among many; this probe times the best plain read it can: bench_decode's READ_SOURCE, a
grid-stride loop of 16-byte loads, 2/4/8 in flight a thread, swept over grid and block size, timed the way
bench_decode times a row (CUDA-graph replay of one launch per input set, sets rotated through >= 256 MB so every
byte comes from HBM). The best configuration at each size is the read floor: a decode of those bytes cannot be
faster than one kernel that only reads them.

    PYTHONPATH=$PWD:$PWD/benchmarks python3 benchmarks/read_floor_probe.py --mb 4 8 16 32 64 128 512
"""
from __future__ import annotations

import argparse
import itertools
import math

import torch

from bench_decode import ROTATE_BYTES, copy_ceilings, graph_time, read_launch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, nargs="+", default=[4, 8, 16, 32, 64, 128, 512])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    ceil = copy_ceilings(warm_s=2.0)
    copy = ceil["copy"]
    grids = [(sms * k, t) for k in (1, 2, 4, 8, 16) for t in (256, 512, 1024) if k * t <= 2048]
    print(f"{torch.cuda.get_device_name()}  {sms} SMs  copy {copy:.0f} GB/s (eager y.copy_(x), read + write)")
    print(f"{'MB':>6} {'sets':>4} {'x.sum us':>9} {'GB/s':>6} {'x copy':>6} | {'best read us':>12} {'GB/s':>6} "
          f"{'x copy':>6}  best config (blocks x threads, unroll)")
    for mb in args.mb:
        n = int(mb * (1 << 20)) // 2  # bf16 elements (a multiple of 8: 16-byte loads)
        n -= n % 8
        nsets = max(1, min(256, math.ceil(ROTATE_BYTES / (2 * n))))
        sets = [torch.randn(n, dtype=torch.bfloat16, device="cuda") for _ in range(nsets)]
        configs = {("sum",): (lambda it=itertools.cycle(sets): next(it).sum())}
        for (blocks, threads), u in itertools.product(grids, (2, 4, 8)):
            configs[(blocks, threads, u)] = read_launch(sets, blocks, threads, u)
        best = {k: math.inf for k in configs}
        for _ in range(args.rounds):  # interleaved rounds: each config once a round
            for key, fn in configs.items():
                best[key] = min(best[key], graph_time(fn, nsets))
        summ = best.pop(("sum",))
        key = min(best, key=best.get)
        gb = lambda t: 2 * n / t / 1e9  # noqa: E731
        print(f"{mb:6.0f} {nsets:4d} {summ * 1e6:9.2f} {gb(summ):6.0f} {gb(summ) / copy:6.2f} | "
              f"{best[key] * 1e6:12.2f} {gb(best[key]):6.0f} {gb(best[key]) / copy:6.2f}  "
              f"{key[0]} x {key[1]}, {key[2]}",
              flush=True)
        del sets, configs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
