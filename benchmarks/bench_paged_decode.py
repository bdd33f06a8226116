"""Paged decode configs on bench_kvcache's rows (run through bench_decode.py, which measures the copy ceiling first):

  python benchmarks/bench_decode.py --paged-sweep   # paged configs on the d64 b32 n2048 and d128 b1 n32768 rows
  python benchmarks/bench_decode.py --paged-choice  # bench_kvcache's six paged rows: served vs other choices

Graph replay, 3 interleaved rounds, GB/s against the contiguous served config of the same keys.
"""
from __future__ import annotations

import itertools
import math
import statistics

import torch

from autoflash.ops.decode_kernels import MMA, m_tiles_for
from autoflash.serve.decode import decode_attention
from bench_decode import ROTATE_BYTES, Row, graph_time, precompile


def paged_sweep(copy, rows=((32, 32, 8, 2048, 64), (1, 32, 8, 32768, 128)), pages=(16, 64)):
    """bench_kvcache's paged rows (batch, Hq, Hkv, N, D): the contiguous served config, then paged
    configs (block_n x warps x stages x evict_first x num_splits 0/1, the served twin among them) on
    the same keys in shuffled pages of each size; graph replay, 3 interleaved rounds; best first."""
    spaces = {dims: paged_space(dims) for dims in rows}
    precompile({c for space, _ in spaces.values() for c in space})
    for dims, (space, twin) in spaces.items():
        paged_sweep_row(dims, space, twin, pages, copy)
        torch.cuda.empty_cache()


def paged_space(dims):
    b, hq, hkv, n, d = dims
    key = {"dtype": "bf16", "head_dim": d, "m_tiles": m_tiles_for(hq // hkv, d), "paged": True}
    space = [MMA.config("sm_90", key, block_n=bn, warps=w, stages=s, num_splits=ns, evict_first=ef,
                        fused_combine=ns == 1, l2_prefetch=128 if d >= 128 else 0)
             for bn, w, s, ef, ns in itertools.product((16, 32, 64), (4, 8), (3, 4, 6), (False, True), (0, 1))]
    twin = served_paged(dims, 16)
    return [twin] + [c for c in space if not c.problems() and c != twin], twin


def served_paged(dims, page):
    """The config the serving path gives this row's cache in pages of `page` keys."""
    from autoflash.ops.decode_launch import DecodeProblem
    from autoflash.serve import decode as decode_api

    b, hq, hkv, n, d = dims
    p = DecodeProblem(b, hq, hkv, 1, n, d, True, page_size=page, num_pages=b * n // page)
    return decode_api._choose_config(None, "bf16", p, torch.cuda.current_device())


# bench_kvcache.DECODE_ROWS (batch, Hq, Hkv, N, D)
KVCACHE_ROWS = ((1, 32, 8, 32768, 128), (8, 32, 8, 8192, 128), (64, 32, 8, 4096, 128), (256, 32, 8, 1024, 128),
                (16, 8, 1, 16384, 128), (32, 32, 8, 2048, 64))


def paged_choice(copy, rows=KVCACHE_ROWS, pages=(16, 64)):
    """Each bench_kvcache paged row: the contiguous served config, then on the same keys in shuffled pages
    the served config ("served": the contiguous one with paged set unless a paged entry was timed on this
    grid), the tuned paged entry of the row's bucket as served before (its split count only on its own
    grid, else the heuristic: "paged entry"), and 16 keys x 8 warps x 3 stages (the page-16 sweep's best
    on two rows); graph replay, 3 interleaved rounds."""
    from autoflash import store
    from autoflash.ops.decode_kernels import DecodeConfig
    from autoflash.serve import decode as decode_api

    choices = {}
    for dims in rows:
        b, hq, hkv, n, d = dims
        key = {"dtype": "bf16", "head_dim": d, "m_tiles": m_tiles_for(hq // hkv, d), "paged": True}
        served = served_paged(dims, 16)
        labels = {served: "served"}
        entry, _ = store.lookup(store.entries_for_arch("sm_90"), torch.cuda.get_device_name(), "decode", key, n)
        if entry is not None:
            old = DecodeConfig.from_dict(entry["config"])
            if decode_api._timed_blocks(entry, old.m_tiles) != b * hkv * math.ceil(hq // hkv / (16 * old.m_tiles)):
                old = old.replace(num_splits=0)
            labels.setdefault(old, "paged entry")
        alt = served.replace(block_n=16, warps=8, stages=3, num_splits=0, fused_combine=False)
        if not alt.problems():
            labels.setdefault(alt, "bn16 w8 s3")
        choices[dims] = labels
    precompile({c for labels in choices.values() for c in labels} | {served_paged(dims, 16).replace(paged=False)
                                                                      for dims in rows})
    for dims, labels in choices.items():
        paged_sweep_row(dims, list(labels), None, pages, copy, labels)
        torch.cuda.empty_cache()


def paged_sweep_row(dims, space, twin, pages, copy, labels=None):
    from autoflash.ops.decode_launch import shuffled_pages

    b, hq, hkv, n, d = dims
    row = Row(b, hq, hkv, n, d)
    sets = []
    for _ in range(max(1, min(4, math.ceil(ROTATE_BYTES / row.kv_bytes)))):
        q = torch.randn(b, 1, hq, d, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(b, n, hkv, d, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        s = dict(q=q, k=k, v=v)
        for page in pages:
            order = torch.from_numpy(shuffled_pages(b, n // page, b * n // page, seed=page)).cuda()
            s[page] = (*(torch.empty(b * n // page, page, hkv, d, device="cuda", dtype=torch.bfloat16).index_copy_(
                0, order.reshape(-1).long(), x.reshape(-1, page, hkv, d)) for x in (k, v)), order)
        sets.append(s)

    def call(cfg, page):
        it = itertools.cycle(sets)

        def run():
            s = next(it)
            if page is None:
                return decode_attention(s["q"], s["k"], s["v"], causal=True, config=cfg)
            return decode_attention(s["q"], s[page][0], s[page][1], block_table=s[page][2], causal=True, config=cfg)
        return run

    cases = [("contig served", None, None)] + [(c.name, p, c) for c in space for p in pages]
    times = {i: [] for i in range(len(cases))}
    for _ in range(3):
        for i, (_, page, cfg) in enumerate(cases):
            times[i].append(graph_time(call(cfg, page), len(sets)))
    gbps = {i: row.bytes / statistics.median(ts) / 1e9 for i, ts in times.items()}
    contig = gbps[0]
    print(f"{row.label()}: contiguous (served config) {contig:.0f} GB/s, {contig / copy:.2f}x copy", flush=True)
    for page in pages:
        ranked = sorted((i for i, c in enumerate(cases) if c[1] == page), key=lambda i: -gbps[i])
        for i in ranked[:8] + [i for i in ranked[8:] if cases[i][2] == twin]:
            spread = (max(times[i]) - min(times[i])) / statistics.median(times[i])
            note = f" ({labels[cases[i][2]]})" if labels else " (served twin)" if cases[i][2] == twin else ""
            print(f"  page {page:3d} {cases[i][0][len('flash_decode_mma_sm_90_bf16_'):]:58} {gbps[i]:6.0f} GB/s "
                  f"{gbps[i] / contig:5.2f}x contig, spread {spread:5.1%}{note}", flush=True)
