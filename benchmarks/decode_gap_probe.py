"""The decode gap to SDPA cuDNN on the big rows (helper DC, sixth session): knob variants of our kernel
beside cuDNN and FA2 on a few rows, CUDA-graph replays of rotated input sets in interleaved rounds (the
method of bench_decode.py, whose helpers it uses); or (--ncu) one call of each variant and of cuDNN
inside an NVTX range "prof" for Nsight Compute.

  python benchmarks/decode_gap_probe.py [--rounds 3] [--variants default,bn16w4s3]
  python benchmarks/decode_gap_probe.py --ncu --rows 'd128 32/8 b64 n8192' --variants default,bn16w4s3
  python benchmarks/decode_gap_probe.py --list       # the variants' configs per row (no GPU)
  python benchmarks/decode_gap_probe.py --alt-tuned /tmp/retune   # + variant "alt": what that tuned folder serves
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash.ops.decode_kernels import MMA, DecodeConfig, m_tiles_for  # noqa: E402

# (head_dim, heads_q, heads_kv, batch, cache length): the big rows of the s5 table furthest from cuDNN
# (one split, short and long caches; two splits), the bar row b1 32k, the worst D 64 row.
ROWS = ((128, 32, 8, 64, 1024), (128, 32, 8, 256, 1024), (128, 32, 8, 64, 32768), (128, 32, 8, 8, 32768),
        (128, 32, 8, 1, 32768), (64, 32, 8, 256, 1024))

# name -> changes to the served config (None: the served config itself, i.e. the tuned entry or default).
VARIANTS = {
    "default": None,
    "default2": None,  # an A/A copy of the served config (fourteenth session: effects the size of the spread)
    "bn16w4s3": dict(block_n=16, warps=4, stages=3, l2_prefetch=128),   # 109 KB at D 128: 2 blocks an SM
    "bn32w2s3": dict(block_n=32, warps=2, stages=3, l2_prefetch=128),   # 109 KB, 2 warps a block
    "bn16w2s4": dict(block_n=16, warps=2, stages=4, l2_prefetch=128),   # 74 KB: 3 blocks an SM
    "pf128ef": dict(l2_prefetch=128, evict_first=True),
    "swizzle": dict(swizzle=True),  # K/V rows unpadded, chunks XOR-swizzled (knob swizzle)
    "bn16w4s3sw": dict(block_n=16, warps=4, stages=3, l2_prefetch=128, swizzle=True),
    "sw_pf0": dict(swizzle=True, l2_prefetch=0),
    # twelfth session: fewer K/V bytes in flight a block, so more blocks an SM (the tuned D 64 entry, bn32 w4 s5,
    # holds 160 KB: one block an SM, 6.5 % of warps active on one-split 1k-cache rows; cuDNN runs five)
    "s3": dict(stages=3),
    "s2": dict(stages=2),
    "w2s3": dict(warps=2, stages=3),
    "bn16s3": dict(block_n=16, stages=3),
    # thirteenth session: rows that split, with more blocks than the one-block-an-SM wave model counts on (split_factor:
    # that many times the served split count, pinned; the light knobs hold 2-4 blocks an SM)
    "x2": dict(split_factor=2),
    "bn16s3x1": dict(block_n=16, stages=3, split_factor=1),
    "bn16s3x2": dict(block_n=16, stages=3, split_factor=2),
}
H200_SMS = 132  # the split counts of --list, which runs without a GPU
# (call 1 also ran "ahead2/4/8": an l2_ahead knob, L2 prefetches of the tile 2/4/8 past the cp.async ring:
# 7-48 % slower on every row; removed, see benchmarks/NOTES.md and decode_gap_h200_2026-11-29_s6_DC_call1.log)


def label(row) -> str:
    d, hq, hkv, b, n = row
    return f"d{d} {hq}/{hkv} b{b} n{n}"


def parse(text: str):
    """'d128 32/8 b64 n1024' -> (128, 32, 8, 64, 1024)."""
    d, heads, b, n = text.split()
    hq, hkv = heads.split("/")
    return int(d[1:]), int(hq), int(hkv), int(b[1:]), int(n[1:])


def served(row):
    """The config our default path serves on this row (tuned entry or default), and its split count."""
    import torch

    from autoflash.ops.decode_launch import DecodeProblem
    from autoflash.serve import decode as decode_api

    d, hq, hkv, b, n = row
    p = DecodeProblem(b, hq, hkv, 1, n, d, True)
    dev = torch.cuda.current_device() if torch.cuda.is_available() else 0
    cfg = decode_api._choose_config(None, "bf16", p, dev)
    return cfg, p


def served_splits(row, cfg: DecodeConfig) -> int:
    """The split count cfg runs this row with (its own, else the heuristic's on this GPU, or the H200 without one)."""
    from autoflash.ops import decode_launch
    from autoflash.ops.decode_launch import DecodeProblem

    d, hq, hkv, b, n = row
    try:
        slots = decode_launch.sm_count(0)
    except Exception:  # no GPU (--list)
        slots = H200_SMS
    return decode_launch.config_splits(cfg, DecodeProblem(b, hq, hkv, 1, n, d, True), slots)


def served_from(folder: str, row):
    """The config served on this row with `folder` searched first for tuned entries (a re-tune's copy)."""
    from autoflash import store
    from autoflash.serve import decode as decode_api

    old = os.environ.get(store.TUNED_ENV)
    os.environ[store.TUNED_ENV] = folder
    try:
        decode_api._entry_blocks.cache_clear()
        return served(row)[0]
    finally:
        os.environ.pop(store.TUNED_ENV) if old is None else os.environ.__setitem__(store.TUNED_ENV, old)
        decode_api._entry_blocks.cache_clear()


def variant_configs(row, names, base: DecodeConfig | None = None) -> dict:
    """name -> config for the valid variants (a knob the config does not have is skipped)."""
    if base is None:
        d, hq, hkv, *_ = row
        key = {"dtype": "bf16", "head_dim": d, "m_tiles": m_tiles_for(hq // hkv, d)}
        base = MMA.default("sm_90", key)
    out = {}
    for name in names:
        changes = VARIANTS[name]
        if changes is None:
            out[name] = base
            continue
        if "split_factor" in changes:
            changes = {k: v for k, v in changes.items() if k != "split_factor"}
            changes["num_splits"] = VARIANTS[name]["split_factor"] * served_splits(row, base)
        if any(not hasattr(base, k) for k in changes):
            continue
        cfg = base.replace(**changes)
        if not cfg.problems():
            out[name] = cfg
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", help="labels, comma-separated (default: ROWS)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--ncu", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--precompile-only", action="store_true")
    ap.add_argument("--alt-tuned", help="a tuned_configs folder: variant 'alt' is what it serves on each row")
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "decode_gap_probe.json"))
    args = ap.parse_args()
    rows = [parse(x) for x in args.rows.split(",")] if args.rows else list(ROWS)
    names = [n.strip() for n in args.variants.split(",")]
    if args.list:
        for row in rows:
            for name, cfg in variant_configs(row, names).items():
                print(f"{label(row):24} {name:12} {cfg.name}  smem {MMA.smem_bytes(cfg)} B")
        return
    import bench_decode as bd  # torch from here on
    import torch

    bases = {row: served(row)[0] for row in rows}
    configs = {row: variant_configs(row, names, bases[row]) for row in rows}
    if args.alt_tuned:
        names.append("alt")
        for row in rows:
            configs[row]["alt"] = served_from(args.alt_tuned, row)
            print(f"{label(row):24} served {bases[row].name}; alt {configs[row]['alt'].name}", flush=True)
    if not args.ncu:  # under Nsight Compute the cache is already filled (no forked compile workers there)
        bd.precompile({c for vs in configs.values() for c in vs.values()})
    if args.precompile_only:
        return
    torch.manual_seed(0)
    if args.ncu:
        return ncu_target(bd, torch, rows, configs)
    ceil = bd.copy_ceilings(warm_s=2.0)
    records = []
    for row in rows:
        d, hq, hkv, b, n = row
        r = bd.Row(b, hq, hkv, n, d)
        r.sets = r.make_sets()
        impls, errs = {}, {}
        for name, cfg in configs[row].items():
            impls[name] = bd.ours(r.sets, cfg)
            q, k, v = (x[:1] for x in r.sets[0])
            o = bd.decode_attention(q, k, v, layout="bhsd", config=cfg)
            ref = bd.F.scaled_dot_product_attention(q.float(), k.float(), v.float(), enable_gqa=True)
            errs[name] = float((o.float() - ref).norm() / ref.norm())
        impls["cudnn"] = bd.sdpa(r.sets, bd.SDPA["cudnn"])
        impls["flash"] = bd.sdpa(r.sets, bd.SDPA["flash"])
        res = bd.time_row(r, args.rounds, impls)
        records.append(dict(row=label(row), served=bases[row].name, configs={k: c.name for k, c in configs[row].items()},
                            err=errs, results=res))
        cud = res.get("cudnn", {}).get("gbps", float("nan"))
        print(f"{label(row):24} " + "; ".join(f"{k} {x['gbps']:.0f} ({x['gbps'] / cud:.3f}x cudnn, spread "
                                              f"{x['spread']:.1%})" for k, x in res.items())
              + f"; max err {max(errs.values()):.1e}", flush=True)
        del r.sets
        torch.cuda.empty_cache()
    end = bd.copy_ceilings()
    Path(args.json).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), ceilings=[ceil, end],
                                               rows=records), indent=1))
    cols = names + ["cudnn", "flash"]
    print(f"\ncopy {ceil['copy']:.0f}/{end['copy']:.0f} GB/s, read {ceil['read']:.0f}/{end['read']:.0f}; GB/s, "
          f"median of {args.rounds} interleaved rounds; x = best variant / cuDNN")
    print(f"{'row':24} " + " ".join(f"{c[:10]:>10}" for c in cols) + f" {'best':>10} {'x cudnn':>7}")
    for rec in records:
        res = rec["results"]
        mine = [c for c in names if c in res]
        best = max(mine, key=lambda c: res[c]["gbps"])
        print(f"{rec['row']:24} " + " ".join(f"{res[c]['gbps']:10.0f}" if c in res else f"{'-':>10}" for c in cols)
              + f" {best[:10]:>10} {res[best]['gbps'] / res['cudnn']['gbps']:7.3f}")


def ncu_target(bd, torch, rows, configs):
    """Per row: one call of each variant (config None: the served one) and one of cuDNN's, each inside NVTX range
    "prof" (warmed up)."""
    for row in rows:
        d, hq, hkv, b, n = row
        r = bd.Row(b, hq, hkv, n, d)
        r.sets = r.make_sets()[:1]
        fns = {name: bd.ours(r.sets, cfg) for name, cfg in configs[row].items()}
        fns["cudnn"] = bd.sdpa(r.sets, bd.SDPA["cudnn"])
        for fn in fns.values():
            fn()
        torch.cuda.synchronize()
        for name, fn in fns.items():
            torch.cuda.nvtx.range_push("prof")
            fn()
            torch.cuda.synchronize()
            torch.cuda.nvtx.range_pop()
            cfg = configs[row].get(name)
            print(f"ncu target: {label(row)} {name} {cfg.name if cfg is not None else ''}", flush=True)
        del r.sets
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
