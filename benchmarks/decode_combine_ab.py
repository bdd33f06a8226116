"""A/B of the decode combine (issue 14's small rows): the served decode call with the combine as it was (old: one
combine kernel, or the fused merge where the tuned config has it), then the served config unfused with
_combine_lanes (lanes), and with the combine a programmatic dependent launch (pdl). CUDA-graph replay over rotating input sets (K/V from
HBM), interleaved rounds, SDPA cuDNN in the same rounds; outputs of every mode compared with old.

  python benchmarks/decode_combine_ab.py [--rounds 5] [--rows 'd64 8/1 b8 n8192,...']
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench_decode import SDPA, graph_time, rows_named, sdpa  # noqa: E402
from autoflash.ops import decode_kernels, decode_launch  # noqa: E402
from autoflash.ops.decode_launch import DecodeProblem  # noqa: E402
from autoflash.serve import decode as decode_api  # noqa: E402
from autoflash.serve.decode import decode_attention  # noqa: E402

ROWS = ("d64 8/1 b1 n32768,d64 8/1 b1 n131072,d64 8/1 b8 n8192,d64 32/8 b1 n8192,d64 32/8 b1 n32768,"
        "d64 32/8 b8 n8192,d64 8/1 b8 n1024,d64 8/1 b1 n1024,d128 8/1 b1 n1024,d128 8/1 b1 n8192,d128 8/1 b1 n32768,"
        "d128 32/8 b1 n1024,d128 8/1 b8 n8192")
# name: (LANES_COMBINE, PDL_COMBINE, served config unfused). The fifth call also timed the PDL trigger at the split
# kernel's start (the removed PDL_TRIGGER switch; decode_combine_ab_h200_2026-11-30_s12e.log).
MODES = {"old": (False, False, False), "lanes": (True, False, True), "pdl": (True, True, True)}


def set_mode(lanes: bool, pdl: bool) -> None:
    decode_kernels.LANES_COMBINE, decode_kernels.PDL_COMBINE = lanes, pdl
    decode_api._kernel_for.cache_clear()  # kernels (and their plans) are rendered anew under the switches


def timed(sets, mode, config):
    it = iter(())

    def call():
        nonlocal it
        try:
            q, k, v = next(it)
        except StopIteration:
            it = iter(sets)
            q, k, v = next(it)
        return decode_attention(q, k, v, causal=True, layout="bhsd", config=config)

    def run():
        set_mode(*MODES[mode][:2])
        return graph_time(call, len(sets))
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", default=ROWS)
    args = ap.parse_args()
    names = list(MODES) + ["cudnn"]
    print(f"{'row':22} {'splits':>6} {'fused':>5} " + " ".join(f"{m + ' us':>14}" for m in names)
          + "  best mode  best/old  best/cudnn  max|diff|")
    for row in rows_named(args.rows):
        label = row.label()
        sets = row.make_sets()
        p = DecodeProblem(row.batch, row.heads_q, row.heads_kv, 1, row.seq_k, row.head_dim, True)
        set_mode(False, False)
        cfg = decode_api._choose_config(None, "bf16", p, torch.cuda.current_device())
        splits = decode_launch.choose_splits(decode_api._kernel_for(cfg, torch.cuda.current_device()), p)
        fused = cfg.fused_combine and 1 < splits <= decode_kernels.FUSED_MAX_SPLITS
        configs = {m: cfg.replace(fused_combine=False) if MODES[m][2] else cfg for m in MODES}
        impls = {m: timed(sets, m, configs[m]) for m in MODES}
        cudnn = sdpa(sets, SDPA["cudnn"])
        impls["cudnn"] = lambda calls=len(sets): graph_time(cudnn, calls)
        q, k, v = sets[0]
        outs = {}
        for m in MODES:  # outputs of each mode on the first set (eager), against old
            set_mode(*MODES[m][:2])
            outs[m] = decode_attention(q, k, v, causal=True, layout="bhsd", config=configs[m]).float()
        diff = max(float((o - outs["old"]).abs().max()) for o in outs.values())
        times = {m: [] for m in impls}
        for _ in range(args.rounds):
            for m, fn in impls.items():
                times[m].append(fn() * 1e6)
        med = {m: statistics.median(t) for m, t in times.items()}
        spread = {m: (max(t) - min(t)) / med[m] for m, t in times.items()}
        best = min((m for m in MODES), key=lambda m: med[m])
        cols = " ".join(f"{med[m]:8.2f} {spread[m]:4.0%}" for m in names)
        print(f"{label:22} {splits:6d} {str(fused):>5} {cols}  {best:>9} {med['old'] / med[best]:8.3f} "
              f"{med['cudnn'] / med[best]:10.3f}  {diff:.1e}", flush=True)
        del sets
        torch.cuda.empty_cache()
    set_mode(True, True)


if __name__ == "__main__":
    main()
