"""One device call's worth of decode experiments (benchmarks/NOTES.md, decode): the memory ceilings,
then the knobs that might close the gap to SDPA's cuDNN backend (L2 cache policy and prefetch on
the K/V copies, the fused combine, request size, blocks per SM, split count) on a few representative
rows against cuDNN, by CUDA-graph replay in interleaved rounds; or (--ncu) a target for Nsight
Compute: one call of ours and one of cuDNN's inside an NVTX range named "prof".

  python benchmarks/decode_probe.py [--rounds 3]         # ceilings + variant table (last)
  python benchmarks/decode_probe.py --ncu                 # run under: ncu --nvtx --nvtx-include "prof/" ...
  python benchmarks/decode_probe.py --list                # the variants' configs, no GPU needed
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoflash.ops.decode import DECODE  # noqa: E402
from autoflash.ops.decode_kernels import MAX_SPLITS, m_tiles_for  # noqa: E402

# (head_dim, heads_q, heads_kv, batch, cache length): long caches on one split (8 GB), two splits,
# batch 1 with 14-16 splits, the bar row (b1 32k), MQA with 128 splits, a short row with 4 splits,
# and the worst row of the last table (d64 b256 n1024, 0.82x).
PROBE_ROWS = ((128, 32, 8, 64, 32768), (128, 32, 8, 256, 8192), (128, 32, 8, 8, 131072), (128, 32, 8, 1, 131072),
              (128, 32, 8, 1, 32768), (128, 32, 8, 1, 8192), (128, 8, 1, 1, 32768), (128, 8, 1, 1, 1024),
              (64, 32, 8, 256, 1024))
NCU_ROW = (128, 32, 8, 64, 8192)  # 2 GB of K/V, 512 blocks of 4 MB: ncu replays it quickly

# name -> (config changes to the base, split rule); the base is the default config without the L2
# prefetch hint (the default when run 6 measured these; the default now has l2_prefetch 128). The split
# rule maps the default split count to the forced one (None: the heuristic's). The last two were added
# after run 6 (not yet measured).
VARIANTS = {
    "pf0": ({}, None),
    "evict_first": (dict(evict_first=True), None),
    "pf128": (dict(l2_prefetch=128), None),
    "pf256": (dict(l2_prefetch=256), None),
    "ef+pf256": (dict(evict_first=True, l2_prefetch=256), None),
    "fused": (dict(fused_combine=True), None),
    "fused<=32": (dict(fused_combine=True), lambda s: min(s, 32)),
    "bulk+ef": (dict(bulk_copy=True, evict_first=True), None),
    "bn64w2": (dict(block_n=64, warps=2, stages=3), None),   # same bytes in flight, 16 KB copies per warp
    "bn16w4": (dict(block_n=16, warps=4, stages=3), None),   # half the shared memory: 2 blocks an SM
    "bn16w8": (dict(block_n=16, warps=8, stages=3), None),   # same bytes, twice the warps
    "2x splits": ({}, lambda s: 2 * s),                       # shorter blocks: a smaller wave tail
    "pf128+ef": (dict(l2_prefetch=128, evict_first=True), None),
    "pf128+bn16w4": (dict(l2_prefetch=128, block_n=16, warps=4, stages=3), None),  # cuDNN's 2 blocks an SM
}


def key_of(head_dim: int, heads_q: int, heads_kv: int) -> dict:
    return {"dtype": "bf16", "head_dim": head_dim, "m_tiles": m_tiles_for(heads_q // heads_kv, head_dim)}


def variant_configs(head_dim: int, heads_q: int, heads_kv: int) -> dict:
    """name -> (config, split rule) for the valid variants of this row's default config."""
    base = DECODE.default("sm_90", key_of(head_dim, heads_q, heads_kv)).replace(l2_prefetch=0)
    out = {}
    for name, (changes, rule) in VARIANTS.items():
        cfg = base.replace(**changes)
        if not cfg.problems():
            out[name] = (cfg, rule)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ncu", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--precompile-only", action="store_true", help="fill the compile cache (all CPU cores)")
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "decode_probe.json"))
    args = ap.parse_args()
    if args.list:
        for d, hq, hkv, *_ in sorted({r[:3] + (0, 0) for r in PROBE_ROWS}):
            for name, (cfg, rule) in variant_configs(d, hq, hkv).items():
                print(f"d{d} {hq}/{hkv} {name:12} {cfg.name} {'splits rule' if rule else ''}")
        return
    import bench_decode as bd  # torch from here on
    import torch

    configs = {r[:3]: variant_configs(*r[:3]) for r in PROBE_ROWS}
    if args.precompile_only:
        return bd.precompile({c for vs in configs.values() for c, _ in vs.values()})

    torch.manual_seed(0)
    if args.ncu:
        return ncu_target(bd, torch)
    # before CUDA starts (the pool forks); cache hits after --precompile-only
    bd.precompile({c for vs in configs.values() for c, _ in vs.values()})
    ceilings = bd.copy_ceilings(warm_s=2.0)
    records = []
    for d, hq, hkv, b, n in PROBE_ROWS:
        row = bd.Row(b, hq, hkv, n, d)
        row.sets = row.make_sets()
        default_splits = bd.splits_used(row)
        impls, errs, splits = {}, {}, {}
        for name, (cfg, rule) in configs[(d, hq, hkv)].items():
            ns = min(rule(default_splits), MAX_SPLITS) if rule else None
            if rule and ns == default_splits:  # the same launch as another variant
                continue
            impls[name] = bd.ours(row.sets, cfg, ns)
            splits[name] = ns or default_splits
            errs[name] = check_variant(bd, torch, row.sets, cfg, ns)
        impls["cudnn"] = bd.sdpa(row.sets, bd.SDPA["cudnn"])
        r = bd.time_row(row, args.rounds, impls)
        records.append(dict(row=row.label(), bytes=row.bytes, default_splits=default_splits, splits=splits,
                            err=errs, results=r))
        print(format_record(records[-1]), flush=True)
        del row.sets
        torch.cuda.empty_cache()
    end = bd.copy_ceilings()
    Path(args.json).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), ceilings=[ceilings, end],
                                               rows=records), indent=1))
    print(f"\nceilings (GB/s) start: {fmt(ceilings)}; end: {fmt(end)}")
    print_table(records, max(ceilings["copy"], end["copy"]), max(ceilings["read"], end["read"]))


def check_variant(bd, torch, sets, cfg, num_splits) -> float:
    """This variant's output against SDPA's math backend in fp32 on the first sequence of the first set."""
    q, k, v = (x[:1] for x in sets[0])
    o = bd.decode_attention(q, k, v, layout="bhsd", config=cfg, num_splits=num_splits)
    ref = bd.F.scaled_dot_product_attention(q.float(), k.float(), v.float(), enable_gqa=True)
    return float((o.float() - ref).norm() / ref.norm())


def fmt(c: dict) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in c.items())


def format_record(rec: dict) -> str:
    r = rec["results"]
    parts = [f"{name} {x['gbps']:.0f} ({x['spread']:.1%})" for name, x in r.items()]
    worst = max(rec["err"].values(), default=float("nan"))
    return f"{rec['row']:26} splits {rec['default_splits']:3d} max err {worst:.1e}: " + "; ".join(parts)


def print_table(records, copy: float, read: float):
    """GB/s per variant and row; last two columns: the best variant over cuDNN, and over the read ceiling."""
    names = list(VARIANTS) + ["cudnn"]
    short = {n: n[:9] for n in names}
    print(f"copy ceiling {copy:.0f} GB/s (read + write), read ceiling {read:.0f} GB/s; '-': variant not run")
    print(f"{'row':24} {'ns':>3} " + " ".join(f"{short[n]:>9}" for n in names) + f" {'best':>10} {'/cudnn':>6}"
          f" {'/read':>5} {'pf0 sprd':>9}")
    for rec in records:
        r = rec["results"]
        cells = [f"{r[n]['gbps']:9.0f}" if n in r else f"{'-':>9}" for n in names]
        ours_names = [n for n in r if n != "cudnn"]
        best = max(ours_names, key=lambda n: r[n]["gbps"])
        cudnn = r.get("cudnn", {}).get("gbps", float("nan"))
        print(f"{rec['row']:24} {rec['default_splits']:3d} " + " ".join(cells) + f" {short[best]:>10}"
              f" {r[best]['gbps'] / cudnn:6.2f} {r[best]['gbps'] / read:5.2f} {r[names[0]]['spread']:9.1%}")


def ncu_target(bd, torch):
    """One call of our default and one of cuDNN's on NCU_ROW inside NVTX range "prof" (decode_gap_probe's)."""
    import decode_gap_probe

    decode_gap_probe.ncu_target(bd, torch, [NCU_ROW], {NCU_ROW: {"ours": None}})


if __name__ == "__main__":
    main()
