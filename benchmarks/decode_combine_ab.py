"""A/B of the decode combine (issue 14's small rows): the served decode call with the combine as it was (off),
WARP_COMBINE (a warp per float4 column, LSEs merged by shuffles) and WARP_COMBINE + PDL_COMBINE (the combine a
programmatic dependent launch of the split kernel); on rows whose served config merges inside the split kernel
(fused_combine), also that config unfused under both switches. CUDA-graph replay over rotating input sets (K/V
from HBM), interleaved rounds, SDPA cuDNN in the same rounds; outputs of every mode compared with off.

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

from bench_decode import SDPA, graph_time, rows_full, sdpa  # noqa: E402
from autoflash.ops import decode_kernels  # noqa: E402
from autoflash.ops.decode_launch import DecodeProblem  # noqa: E402
from autoflash.serve import decode as decode_api  # noqa: E402
from autoflash.serve.decode import decode_attention  # noqa: E402

ROWS = ("d64 8/1 b8 n1024,d64 8/1 b8 n8192,d64 8/1 b1 n1024,d64 8/1 b1 n8192,d128 8/1 b1 n1024,d128 8/1 b1 n8192,"
        "d128 8/1 b1 n32768,d128 8/1 b1 n131072,d128 8/1 b8 n1024,d128 8/1 b8 n32768,d64 32/8 b1 n32768,"
        "d128 32/8 b1 n1024,d128 32/8 b1 n32768,d128 32/8 b8 n8192,d64 8/1 b8 n131072")
MODES = {"off": (False, False), "warp": (True, False), "warp_pdl": (True, True)}


def set_mode(warp: bool, pdl: bool) -> None:
    decode_kernels.WARP_COMBINE, decode_kernels.PDL_COMBINE = warp, pdl
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
        set_mode(*MODES[mode[0]])
        return graph_time(call, len(sets))
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--rows", default=ROWS)
    args = ap.parse_args()
    wanted = [r.strip() for r in args.rows.split(",")]
    rows = {r.label(): r for r in rows_full() if r.label() in wanted}
    print(f"{'row':22} {'splits':>6} {'fused':>5} " + " ".join(f"{m:>14}" for m in
          ("off us", "warp", "warp_pdl", "unfused_warp", "unfused_pdl", "cudnn")) + "  best/off  best/cudnn  max|diff|")
    for label in wanted:
        row = rows[label]
        sets = row.make_sets()
        p = DecodeProblem(row.batch, row.heads_q, row.heads_kv, 1, row.seq_k, row.head_dim, True)
        set_mode(False, False)
        cfg = decode_api._choose_config(None, "bf16", p, torch.cuda.current_device())
        from autoflash.ops import decode_launch
        splits = decode_launch.choose_splits(decode_api._kernel_for(cfg, torch.cuda.current_device()), p)
        fused = cfg.fused_combine and 1 < splits <= decode_kernels.FUSED_MAX_SPLITS
        impls = {m: timed(sets, (m,), None) for m in MODES}
        if fused:
            unfused = cfg.replace(fused_combine=False)
            impls["unfused_warp"] = timed(sets, ("warp",), unfused)
            impls["unfused_pdl"] = timed(sets, ("warp_pdl",), unfused)
        cudnn = sdpa(sets, SDPA["cudnn"])
        impls["cudnn"] = lambda: graph_time(cudnn, len(sets))
        q, k, v = sets[0]
        outs = {}
        for m in MODES:  # outputs of each mode on the first set (eager), against off
            set_mode(*MODES[m])
            outs[m] = decode_attention(q, k, v, causal=True, layout="bhsd").float()
        if fused:
            set_mode(True, True)
            outs["unfused_pdl"] = decode_attention(q, k, v, causal=True, layout="bhsd", config=unfused).float()
        diff = max(float((o - outs["off"]).abs().max()) for o in outs.values())
        times = {m: [] for m in impls}
        for _ in range(args.rounds):
            for m, fn in impls.items():
                times[m].append(fn() * 1e6)
        med = {m: statistics.median(t) for m, t in times.items()}
        spread = {m: (max(t) - min(t)) / med[m] for m, t in times.items()}
        best = min(v for m, v in med.items() if m not in ("off", "cudnn"))
        cols = " ".join(f"{med[m]:8.2f} {spread[m]:4.0%}" if m in med else f"{'-':>14}"
                        for m in ("off", "warp", "warp_pdl", "unfused_warp", "unfused_pdl", "cudnn"))
        print(f"{label:22} {splits:6d} {str(fused):>5} {cols}  {med['off'] / best:8.3f} {med['cudnn'] / best:10.3f}"
              f"  {diff:.1e}", flush=True)
        del sets
        torch.cuda.empty_cache()
    set_mode(False, False)


if __name__ == "__main__":
    main()
