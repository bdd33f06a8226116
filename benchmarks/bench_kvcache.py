"""Paged KV-cache decode on the GPU (issue 15's bar: paged decode with pages of 16 and 64 keys
>= 0.9x the contiguous decode of the same cache): autoflash's decode kernel on a contiguous cache,
on the same keys in shuffled 16- and 64-key pages (attention_with_kvcache with a block table),
and PyTorch SDPA's flash, cuDNN and efficient backends (enable_gqa=True, on a contiguous
(B, H, N, D) copy: SDPA has no paged form), with the device copy bandwidth measured in the same run.

GB/s = bytes of Q, K, V and O (each once) over the time of one call. Each implementation is timed
by CUDA-graph replay of one call per input set, rotating enough sets (>= 256 MB of K/V) that K/V
come from HBM, not L2; rounds are interleaved (every implementation once per round); the table gives
the median over rounds and the largest spread (max - min) / median of our three. Every sequence is
full (cache_seqlens = N), so SDPA does the same work; Nq = 1.

  python benchmarks/bench_kvcache.py             # the rows below, table last, JSON to $OUT or .
  python benchmarks/bench_kvcache.py --quick     # three rows
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from autoflash.ops.decode_launch import shuffled_pages  # noqa: E402
from autoflash.serve.decode import decode_attention  # noqa: E402
from bench_decode import copy_ceilings, graph_time  # noqa: E402

PAGES = (16, 64)
ROTATE_BYTES = 256 << 20
MAX_SETS = 4
SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION}
OURS = ("contig",) + tuple(f"paged{p}" for p in PAGES)
# (batch, heads_q, heads_kv, cache length, head_dim)
ROWS = [(1, 32, 8, 32768, 128), (8, 32, 8, 8192, 128), (64, 32, 8, 4096, 128), (256, 32, 8, 1024, 128),
        (16, 8, 1, 16384, 128), (32, 32, 8, 2048, 64)]
QUICK = ROWS[:3]


def make_set(b, hq, hkv, n, d):
    """One input set: q (B, 1, Hq, D), contiguous caches (B, N, Hkv, D), the same keys in shuffled
    pages per page size with their tables, and SDPA's (B, H, N, D) copies."""
    q = torch.randn(b, 1, hq, d, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(b, n, hkv, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    s = dict(q=q, k=k, v=v, seqlens=torch.full((b,), n, dtype=torch.int32, device="cuda"),
             sdpa=(q.transpose(1, 2).contiguous(), k.transpose(1, 2).contiguous(), v.transpose(1, 2).contiguous()))
    for page in PAGES:
        max_pages = n // page
        table = torch.from_numpy(shuffled_pages(b, max_pages, b * max_pages, seed=page)).cuda()
        order = table.reshape(-1).long()
        pages = []
        for x in (k, v):
            paged = torch.empty(b * max_pages, page, hkv, d, device="cuda", dtype=torch.bfloat16)
            paged[order] = x.reshape(b * max_pages, page, hkv, d)
            pages.append(paged)
        s[f"paged{page}"] = (*pages, table)
    return s


def implementations(sets) -> dict:
    def cycle(call):
        it = itertools.cycle(sets)
        return lambda: call(next(it))

    impls = {"contig": cycle(lambda s: decode_attention(s["q"], s["k"], s["v"], s["seqlens"], causal=True))}
    for page in PAGES:
        name = f"paged{page}"
        impls[name] = cycle(lambda s, name=name: decode_attention(s["q"], s[name][0], s[name][1], s["seqlens"],
                                                                  block_table=s[name][2], causal=True))
    for name, backend in SDPA.items():
        def call(s, backend=backend):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(*s["sdpa"], enable_gqa=True)
        impls[name] = cycle(call)
    return impls


def agreement(s) -> dict:
    """Paged outputs against the contiguous one (the same keys; bit-equal when the same knobs and
    split count serve both), and the contiguous one against SDPA's math backend in fp32."""
    contig = decode_attention(s["q"], s["k"], s["v"], s["seqlens"], causal=True)
    out = {}
    for page in PAGES:
        kp, vp, table = s[f"paged{page}"]
        o = decode_attention(s["q"], kp, vp, s["seqlens"], block_table=table, causal=True)
        out[f"paged{page}_equal"] = bool(torch.equal(o, contig))
        out[f"paged{page}_max_diff"] = float((o.float() - contig.float()).abs().max())
    q, k, v = (x[:1].float() for x in s["sdpa"])
    with sdpa_kernel([SDPBackend.MATH]):
        ref = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    out["rel_err_vs_sdpa_math"] = float((contig[:1].float().transpose(1, 2) - ref).norm() / ref.norm())
    return out


def time_row(dims, rounds: int) -> dict:
    b, hq, hkv, n, d = dims
    kv_bytes = 2 * 2 * b * hkv * n * d
    total = kv_bytes + 2 * 2 * b * hq * d
    sets = [make_set(*dims) for _ in range(max(1, min(MAX_SETS, math.ceil(ROTATE_BYTES / kv_bytes))))]
    record = dict(row=f"d{d} {hq}/{hkv} b{b} n{n}", batch=b, heads_q=hq, heads_kv=hkv, seq_k=n, head_dim=d,
                  kv_bytes=kv_bytes, bytes=total, sets=len(sets), **agreement(sets[0]))
    impls = implementations(sets)
    times = {name: [] for name in impls}
    for _ in range(rounds):  # interleaved: every implementation once per round
        for name, fn in impls.items():
            if times[name] is None:
                continue
            try:
                times[name].append(graph_time(fn, len(sets)))
            except Exception as exc:  # a backend that refuses the shape: n/a, with why
                times[name] = None
                print(f"  {record['row']} {name}: n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
    for name, ts in times.items():
        if ts:
            med = statistics.median(ts)
            record[name] = dict(gbps=total / med / 1e9, us=med * 1e6, spread=(max(ts) - min(ts)) / med)
    del sets, impls
    torch.cuda.empty_cache()
    return record


HEADER = (f"{'row':24} {'KV MB':>6} {'contig':>7} {'pg16':>7} {'pg64':>7} {'16/c':>5} {'64/c':>5} {'flash':>6} "
          f"{'cudnn':>6} {'effic':>6} {'16/best':>7} {'64/best':>7} {'16/copy':>7} {'spread':>6} {'same':>5}")


def _g(r, name):
    return r[name]["gbps"] if name in r else float("nan")


def format_row(r: dict, copy: float) -> str:
    best = max((_g(r, n) for n in SDPA if n in r), default=float("nan"))
    spread = max(r[n]["spread"] for n in OURS if n in r)
    same = "yes" if all(r[f"paged{p}_equal"] for p in PAGES) else "no"
    sdpa_cols = " ".join(f"{_g(r, n):6.0f}" if n in r else f"{'n/a':>6}" for n in SDPA)
    c, p16, p64 = _g(r, "contig"), _g(r, "paged16"), _g(r, "paged64")
    return (f"{r['row']:24} {r['kv_bytes'] / 2**20:6.0f} {c:7.0f} {p16:7.0f} {p64:7.0f} {p16 / c:5.2f} {p64 / c:5.2f} "
            f"{sdpa_cols} {p16 / best:7.2f} {p64 / best:7.2f} {p16 / copy:7.2f} {spread:6.1%} {same:>5}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "bench_kvcache.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    start = copy_ceilings(warm_s=1.0)
    records = []
    for dims in (QUICK if args.quick else ROWS):
        records.append(time_row(dims, args.rounds))
        print(format_row(records[-1], start["copy"]), flush=True)
    end = copy_ceilings()
    copy = max(start["copy"], end["copy"])
    print(f"\n{torch.cuda.get_device_name()}: copy (y.copy_(x), read + write) {start['copy']:.0f} GB/s at the start, "
          f"{end['copy']:.0f} at the end (x copy uses {copy:.0f}); pg16/pg64 = paged decode, 16/64 keys a page, "
          f"shuffled; same = paged output bit-equal to the contiguous one")
    print(HEADER)
    print("\n".join(format_row(r, copy) for r in records))
    miss = [f"{r['row']} paged{p}: {_g(r, f'paged{p}') / _g(r, 'contig'):.2f}x contig" for r in records for p in PAGES
            if not _g(r, f"paged{p}") >= 0.9 * _g(r, "contig")]
    print(f"bar (paged >= 0.9x contiguous): {len(records) * len(PAGES) - len(miss)} of {len(records) * len(PAGES)} hold"
          + "".join(f"\n  MISS {m}" for m in miss))
    Path(args.json).write_text(json.dumps(dict(ceilings=[start, end], device=torch.cuda.get_device_name(),
                                               rows=records), indent=1))


if __name__ == "__main__":
    main()
