"""Issue 15's benchmark on the GPU, one run, three tables (bf16), the bars last.

1. varlen prefill: 16 packed sequences of 128..8192 tokens (fixed seed), D 128, 16 heads, causal
   (attention_varlen), vs autoflash's dense kernel on 16 x the mean length (bar: TFLOP/s >= 0.9x) and
   SDPA on the right-padded batch, is_causal (bar: >= 1.0x the best). TFLOP/s count useful pairs.
2. paged decode, Nq 1, full caches: the decode kernel on a contiguous cache and on the same keys in
   shuffled 16- and 64-key pages (bar: >= 0.9x contiguous, every row and page size), SDPA beside it
   (enable_gqa, (B, H, N, D) copies). GB/s = Q+K+V+O bytes / time; sets rotated (>= 256 MB).
3. chunked prefill: batch 4, 32 heads, D 128, 256 new tokens after 1024 cached (attention_with_kvcache,
   bottom-right, cache read in place; cache_seqlens None, given, and with the cache in shuffled pages of 16
   and 64 keys), vs SDPA with an explicit bottom-right
   bool mask on each backend that takes one (n/a: refused, with SDPA's reason; bar: >= 1.0x the best).
   Flash with torch's causal_lower_right bias (no mask tensor) is shown for reference, outside the bar.

Kernel time: each call captured in a CUDA graph once, replayed; rounds interleaved; median over rounds
and spread (max - min) / median. Host cost apart: "host us" = CPU time to issue one call (20 back to
back; a call that copies to the host waits for the GPU inside it), "eager us" = CUDA events around those
20 / 20. attention_varlen copies cu_seqlens to the host every call, so its graph replays prepare_varlen's
launch (checked once); its host and eager columns time attention_varlen itself.

  python benchmarks/bench_kvcache.py [--rounds 5]      # all three parts, JSON to $OUT or .
  python benchmarks/bench_kvcache.py --parts decode --quick
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.nn.attention.bias import causal_lower_right  # noqa: E402

import autoflash  # noqa: E402
from autoflash.ops.decode_launch import shuffled_pages  # noqa: E402
from autoflash.serve.decode import decode_attention  # noqa: E402
from autoflash.serve.varlen import prepare_varlen  # noqa: E402
from bench_decode import copy_ceilings, precompile  # noqa: E402
from graph_timing import Impl, measure  # noqa: E402

SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
DT = torch.bfloat16
PAGES = (16, 64)
ROTATE_BYTES, MAX_SETS = 256 << 20, 4
# paged decode rows: (batch, heads_q, heads_kv, cache length, head_dim)
DECODE_ROWS = [(1, 32, 8, 32768, 128), (8, 32, 8, 8192, 128), (64, 32, 8, 4096, 128), (256, 32, 8, 1024, 128),
               (16, 8, 1, 16384, 128), (32, 32, 8, 2048, 64)]


def sdpa_call(backend: str, *args, **kw):
    def call():
        with sdpa_kernel([SDPA[backend]]):
            return F.scaled_dot_product_attention(*args, **kw)
    return call


def prefill_table(title: str, r: dict, ours: str, notes: dict | None = None) -> None:
    print(f"\n{title}\n| implementation | kernel us (graph) | TFLOP/s (useful pairs) | spread | eager us/call | "
          f"host us/call | {ours}'s speed-up |\n|---|---|---|---|---|---|---|")
    for name, m in r.items():
        note = (notes or {}).get(name, "")
        if m.get("na"):
            print(f"| {name}{note} | n/a: {m['na']} | | | | | |")
            continue
        print(f"| {name}{note} | {m['s'] * 1e6:.1f} | {m['rate'] / 1e12:.0f} | {m['spread']:.1%} | "
              f"{m['eager_s'] * 1e6:.1f} | {m['host_s'] * 1e6:.1f} | {m['s'] / r[ours]['s']:.2f}x |")


def served_configs() -> set:
    """The configs this run's calls are served by (forward: tuned by their seq_k; decode: per row and
    page size), to compile them on every core before anything is timed."""
    from autoflash.kernels.device import device_arch
    from autoflash.ops.decode_launch import DecodeProblem
    from autoflash.serve import decode as decode_api
    from autoflash.serve.api import choose_config

    arch, name = device_arch(torch.cuda.current_device())
    lengths = varlen_lengths()
    flags = dict(window=False, softcap=False, sinks=False, alibi=False)
    cfgs = {choose_config(arch, name, "bf16", 128, True, n, flags)
            for n in (max(lengths), sum(lengths) // len(lengths), 1280)}
    for b, hq, hkv, n, d in DECODE_ROWS:
        for page in (0,) + PAGES:
            p = DecodeProblem(b, hq, hkv, 1, n, d, True, page_size=page, num_pages=b * n // page if page else 0)
            cfgs.add(decode_api._choose_config(None, "bf16", p, torch.cuda.current_device()))
    return cfgs


# ---------------------------------------------------------------------------------------- 1. varlen
def varlen_lengths() -> list[int]:
    return np.random.default_rng(0).integers(128, 8193, 16).tolist()


def varlen_part(rounds: int, heads: int = 16, d: int = 128) -> dict:
    lengths = varlen_lengths()
    b, total, longest, mean = len(lengths), sum(lengths), max(lengths), sum(lengths) // len(lengths)
    q, k, v = (torch.randn(total, heads, d, device="cuda", dtype=DT) for _ in range(3))
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device="cuda")
    dq, dk, dv = (torch.randn(b, heads, mean, d, device="cuda", dtype=DT) for _ in range(3))
    pq, pk, pv = (torch.zeros(b, heads, longest, d, device="cuda", dtype=DT) for _ in range(3))
    starts = cu.tolist()
    for i, (s, n) in enumerate(zip(starts, lengths)):  # right padding
        for dst, src in ((pq, q), (pk, k), (pv, v)):
            dst[i, :, :n] = src[s:s + n].transpose(0, 1)
    useful = 2.0 * heads * d * sum(n * (n + 1) for n in lengths)
    impls = [Impl("varlen", prepare_varlen(q, k, v, cu, cu, longest, longest, causal=True), work=useful,
                  eager=lambda: autoflash.attention_varlen(q, k, v, cu, cu, longest, longest, causal=True)),
             Impl("dense", lambda: autoflash.attention(dq, dk, dv, causal=True),
                  work=2.0 * b * heads * d * mean * (mean + 1))]
    impls += [Impl(f"padded {n}", sdpa_call(n, pq, pk, pv, is_causal=True), work=useful)
              for n in ("flash", "cudnn", "efficient")]
    i, ref = 3, F.scaled_dot_product_attention(*(x[3:4, :, :lengths[3]] for x in (pq, pk, pv)), is_causal=True)
    check = autoflash.attention_varlen(q, k, v, cu, cu, longest, longest, causal=True)[starts[i]:starts[i + 1]]
    check = check.transpose(0, 1).float() - ref[0].float()
    print(f"varlen lengths {lengths}; vs SDPA on sequence {i} (length {lengths[i]}): max abs diff "
          f"{check.abs().max().item():.3e}", flush=True)
    r = measure(impls, rounds)
    prefill_table(f"varlen prefill: {b} sequences, {total} tokens, {heads} heads, D {d}, causal "
                  f"(dense: {b} x {mean} tokens; padded: {b} x {longest})", r, "varlen")
    return dict(lengths=lengths, rows=r)


# ---------------------------------------------------------------------------------------- 2. paged decode
def decode_set(b, hq, hkv, n, d) -> dict:
    """q (B, 1, Hq, D), contiguous caches (B, N, Hkv, D), the same keys in shuffled pages per page size
    with their tables, and SDPA's (B, H, N, D) copies."""
    q = torch.randn(b, 1, hq, d, device="cuda", dtype=DT)
    k, v = (torch.randn(b, n, hkv, d, device="cuda", dtype=DT) for _ in range(2))
    s = dict(q=q, k=k, v=v, seqlens=torch.full((b,), n, dtype=torch.int32, device="cuda"),
             sdpa=tuple(x.transpose(1, 2).contiguous() for x in (q, k, v)))
    for page in PAGES:
        (kp, table), (vp, _) = shuffled(k, page), shuffled(v, page)
        s[f"paged{page}"] = (kp, vp, table)
    return s


def shuffled(x, page: int):
    """x (B, N, H, D) as (B N / page, page, H, D) pages in a shuffled order (seeded by the page size), and the
    (B, N / page) block table."""
    b, n, h, d = x.shape
    table = torch.from_numpy(shuffled_pages(b, n // page, b * n // page, seed=page)).cuda()
    pages = torch.empty(b * n // page, page, h, d, device=x.device, dtype=x.dtype)
    return pages.index_copy_(0, table.reshape(-1).long(), x.reshape(-1, page, h, d)), table


def decode_impls(sets, total_bytes: float) -> list[Impl]:
    def cycle(call):
        it = itertools.cycle(sets)
        return lambda: call(next(it))

    n = len(sets)
    impls = [Impl("contig", cycle(lambda s: decode_attention(s["q"], s["k"], s["v"], s["seqlens"], causal=True)),
                  calls=n, work=total_bytes)]
    for page in PAGES:
        name = f"paged{page}"
        impls.append(Impl(name, cycle(lambda s, name=name: decode_attention(
            s["q"], s[name][0], s[name][1], s["seqlens"], block_table=s[name][2], causal=True)), calls=n,
            work=total_bytes))
    for name in ("flash", "cudnn", "efficient"):
        impls.append(Impl(name, cycle(lambda s, name=name: sdpa_call(name, *s["sdpa"], enable_gqa=True)()), calls=n,
                          work=total_bytes))
    return impls


def decode_row(dims, rounds: int) -> dict:
    b, hq, hkv, n, d = dims
    kv_bytes = 2 * 2 * b * hkv * n * d
    total = kv_bytes + 2 * 2 * b * hq * d
    sets = [decode_set(*dims) for _ in range(max(1, min(MAX_SETS, math.ceil(ROTATE_BYTES / kv_bytes))))]
    s = sets[0]
    contig = decode_attention(s["q"], s["k"], s["v"], s["seqlens"], causal=True)
    same = all(torch.equal(decode_attention(s["q"], *s[f"paged{p}"][:2], s["seqlens"], block_table=s[f"paged{p}"][2],
                                            causal=True), contig) for p in PAGES)
    r = measure(decode_impls(sets, total), rounds)
    del sets
    torch.cuda.empty_cache()
    return dict(row=f"d{d} {hq}/{hkv} b{b} n{n}", kv_bytes=kv_bytes, bytes=total, same=same, impls=r)


DECODE_HEADER = (f"{'row':22} {'KV MB':>6} {'contig':>7} {'pg16':>7} {'pg64':>7} {'16/c':>5} {'64/c':>5} "
                 f"{'flash':>6} {'cudnn':>6} {'effic':>6} {'16/best':>7} {'spread':>6} {'same':>4} "
                 f"{'host us c/16/64':>16}")


def _gbps(r, name):
    m = r["impls"].get(name, {})
    return m["rate"] / 1e9 if m.get("rate") else float("nan")


def decode_line(r: dict) -> str:
    c, p16, p64 = (_gbps(r, n) for n in ("contig", "paged16", "paged64"))
    sdpa = [_gbps(r, n) for n in ("flash", "cudnn", "efficient")]
    best = max((g for g in sdpa if g == g), default=float("nan"))
    spread = max(r["impls"][n].get("spread", 0) for n in ("contig", "paged16", "paged64"))
    host = "/".join(f"{r['impls'][n]['host_s'] * 1e6:.0f}" if r["impls"][n].get("host_s") else "-"
                    for n in ("contig", "paged16", "paged64"))
    cols = " ".join(f"{g:6.0f}" if g == g else f"{'n/a':>6}" for g in sdpa)
    return (f"{r['row']:22} {r['kv_bytes'] / 2**20:6.0f} {c:7.0f} {p16:7.0f} {p64:7.0f} {p16 / c:5.2f} {p64 / c:5.2f} "
            f"{cols} {p16 / best:7.2f} {spread:6.1%} {'yes' if r['same'] else 'no':>4} {host:>16}")


def decode_part(rounds: int, quick: bool) -> dict:
    start = copy_ceilings(warm_s=1.0)
    records = []
    for dims in (DECODE_ROWS[:3] if quick else DECODE_ROWS):
        records.append(decode_row(dims, rounds))
        print(decode_line(records[-1]), flush=True)
    end = copy_ceilings()
    for rec in records:
        for name, m in rec["impls"].items():
            if m.get("na"):
                print(f"  {rec['row']} {name}: n/a ({m['na']})")
    print(f"\npaged decode, Nq 1, full caches (GB/s = Q+K+V+O bytes / kernel time, graph replay; copy y.copy_(x) "
          f"{start['copy']:.0f} GB/s at the start, {end['copy']:.0f} at the end); pg16/pg64: 16/64 keys a page, "
          f"shuffled; same: paged outputs bit-equal to contiguous; host us: CPU time per decode_attention call "
          f"(cache_seqlens checked on the host)\n```\n{DECODE_HEADER}")
    print("\n".join(decode_line(r) for r in records) + "\n```")
    return dict(ceilings=[start, end], rows=records)


# ---------------------------------------------------------------------------------------- 3. chunked prefill
def chunked_inputs(batch: int, heads: int, cache: int, chunk: int, d: int):
    """q (B, chunk, H, D) and full caches (B, cache + chunk, H, D), their lengths, SDPA's (B, H, N, D) copies,
    SDPA's bottom-right bool mask and the useful FLOPs (also paged_prefill_probe.py's problem)."""
    n = cache + chunk
    q = torch.randn(batch, chunk, heads, d, device="cuda", dtype=DT)
    k, v = (torch.randn(batch, n, heads, d, device="cuda", dtype=DT) for _ in range(2))
    seqlens = torch.full((batch,), n, dtype=torch.int32, device="cuda")
    tq, tk, tv = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    mask = torch.ones(chunk, n, dtype=torch.bool, device="cuda").tril(diagonal=cache)  # bottom-right
    work = 4.0 * batch * heads * d * sum(min(n, cache + i + 1) for i in range(chunk))
    return q, k, v, seqlens, (tq, tk, tv), mask, work


def chunked_part(rounds: int, batch=4, heads=32, cache=1024, chunk=256, d=128) -> dict:
    n = cache + chunk
    q, k, v, seqlens, (tq, tk, tv), mask, work = chunked_inputs(batch, heads, cache, chunk, d)
    impls = [Impl("ours", lambda: autoflash.attention_with_kvcache(q, k, v, causal=True), work=work),
             Impl("ours, cache_seqlens", lambda: autoflash.attention_with_kvcache(q, k, v, seqlens, causal=True),
                  work=work)]
    paged = {page: [shuffled(x, page) for x in (k, v)] for page in PAGES}  # [(k pages, table), (v pages, table)]
    impls += [Impl(f"ours, paged {page}", lambda kv=kv: autoflash.attention_with_kvcache(
        q, kv[0][0], kv[1][0], seqlens, block_table=kv[0][1], causal=True), work=work) for page, kv in paged.items()]
    impls += [Impl(f"sdpa {b}", sdpa_call(b, tq, tk, tv, attn_mask=mask), work=work) for b in SDPA]
    impls.append(Impl("sdpa flash, causal_lower_right", sdpa_call("flash", tq, tk, tv,
                                                                  attn_mask=causal_lower_right(chunk, n)), work=work))
    ref = sdpa_call("math", tq.float(), tk.float(), tv.float(), attn_mask=mask)()
    diff = {}
    for impl in impls[:2 + len(PAGES)]:
        try:
            diff[impl.name] = float((impl.kernel().transpose(1, 2).float() - ref).abs().max())
        except Exception as exc:  # reported here, and n/a in the table
            diff[impl.name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    print(f"chunked prefill vs SDPA math fp32 (bottom-right mask): max abs diff {diff}", flush=True)
    r = measure(impls, rounds)
    prefill_table(f"chunked prefill: batch {batch}, {heads} heads, D {d}, {chunk} new tokens after {cache} cached "
                  "(sdpa <backend>: an explicit bottom-right bool mask; n/a: the backend refuses it)", r, "ours",
                  {"ours": " (cache_seqlens None)", "sdpa flash, causal_lower_right": " (reference, not a mask)"})
    return dict(rows=r, max_abs_diff=diff)


def bars(res: dict) -> None:
    lines = []
    if "varlen" in res:
        r = res["varlen"]["rows"]
        best = min((m["s"] for n, m in r.items() if n.startswith("padded") and "s" in m), default=float("nan"))
        lines.append(f"varlen/dense TFLOP/s {r['varlen']['rate'] / r['dense']['rate']:.2f} (bar >= 0.9)")
        lines.append(f"varlen vs best padded SDPA {best / r['varlen']['s']:.2f}x (bar >= 1.0)")
    if "decode" in res:
        recs = res["decode"]["rows"]
        miss = [f"{r['row']} page {p}: {_gbps(r, f'paged{p}') / _gbps(r, 'contig'):.2f}x" for r in recs for p in PAGES
                if not _gbps(r, f"paged{p}") >= 0.9 * _gbps(r, "contig")]
        lines.append(f"paged >= 0.9x contiguous: {len(recs) * len(PAGES) - len(miss)} of {len(recs) * len(PAGES)} hold"
                     + "".join(f"; MISS {m}" for m in miss))
    if "chunked" in res:
        r = res["chunked"]["rows"]
        masked = {n: m["s"] for n, m in r.items() if n.startswith("sdpa") and "lower_right" not in n and "s" in m}
        name = min(masked, key=masked.get)
        for ours in (n for n, m in r.items() if n.startswith("ours") and "s" in m):
            lines.append(f"chunked prefill ({ours}) vs best SDPA with a mask ({name}) {masked[name] / r[ours]['s']:.2f}x "
                         "(bar >= 1.0)")
    print("\nbars (kernel times, graph replay): " + "\n  ".join([""] + lines))


def safe_bars(res: dict) -> None:
    try:
        bars(res)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:  # an implementation was n/a
        print(f"bars: not computed ({type(exc).__name__}: {exc}); see the tables")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", choices=("varlen", "decode", "chunked"),
                    default=["varlen", "decode", "chunked"])
    ap.add_argument("--quick", action="store_true", help="decode: the first three rows")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "bench_kvcache.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16", flush=True)
    t0 = time.time()
    precompile(served_configs())
    print(f"compiled the served kernels in {time.time() - t0:.1f} s", flush=True)
    res = {}
    parts = {"varlen": lambda: varlen_part(args.rounds), "decode": lambda: decode_part(args.rounds, args.quick),
             "chunked": lambda: chunked_part(args.rounds)}
    for part in ("varlen", "decode", "chunked"):  # chunked last: its paged rows are the newest path
        if part in args.parts:
            res[part] = parts[part]()
    safe_bars(res)
    Path(args.json).write_text(json.dumps(dict(device=torch.cuda.get_device_name(), **res), indent=1, default=str))


if __name__ == "__main__":
    main()
