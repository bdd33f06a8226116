"""Decode attention on the GPU: autoflash's split-KV kernel against PyTorch SDPA's flash, cuDNN and
efficient backends (enable_gqa=True) and the device copy bandwidth, all measured in one run.

GB/s = bytes of Q, K, V and O (each once) over the time of one call. Each implementation is timed
by CUDA-graph replay of one call per input set, rotating enough sets (>= 256 MB in all) that K/V
come from HBM, not L2, as in a real decode step; rounds are interleaved (every implementation once
per round) and the table gives the median over rounds and the spread (max - min) / median of ours.
SDPA's is_causal is top-left, so the comparison uses Nq = 1 (then causal changes nothing).
"rd same": GB/s of a plain read of exactly the row's K/V bytes (READ_SOURCE: 16-byte streaming loads, 8 blocks of
256 threads an SM, 2 loads in flight a thread: the best or within 3 % of the best of 27 grids from 8 MB up in
read_floor_probe.py), timed the same way: what one kernel that only reads those bytes reaches at that size, launch
and fill included (the small rows' ceiling is not the copy's). Until the seventeenth session this column was
PyTorch's x.sum(), 2.2-3.5x slower than this read below 32 MB.

  python benchmarks/bench_decode.py                 # the full table (bf16)
  python benchmarks/bench_decode.py --quick         # a few rows
  python benchmarks/bench_decode.py --rows 'd64 32/8 b1 n1024,d128 32/8 b1 n32768'   # rows of the full table
  python benchmarks/bench_decode.py --sweep         # our kernel's configs, then split counts, on the quick rows
  python benchmarks/bench_decode.py --paged-sweep   # paged configs on bench_kvcache's d64 page-16 row
  python benchmarks/bench_decode.py --paged-choice  # bench_kvcache's six paged rows: served vs other choices
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from autoflash.ops.decode import DECODE  # noqa: E402
from autoflash.serve.decode import decode_attention  # noqa: E402
from autoflash.ops.decode_kernels import MMA, m_tiles_for  # noqa: E402

ROTATE_BYTES = 256 << 20   # input sets rotated per timed graph: several times the 50 MB L2
MAX_SETS = 256
MAX_KV_BYTES = 12 << 30    # rows whose K/V would exceed this are left out (memory)
SDPA = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION}


def event_time(fn, calls: int = 10, reps: int = 5) -> float:
    """Seconds per call of fn launched eagerly `calls` times between two CUDA events; median of reps."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / calls)
    return statistics.median(times)


def copy_ceilings(warm_s: float = 0.0, gib: int = 2) -> dict:
    """The memory ceilings in GB/s, on `gib` GiB of bf16 (40x the L2):
    copy: y.copy_(x) launched eagerly (a cudaMemcpy D2D) between CUDA events, bytes read + written;
    copy_graph: the same copy captured in a CUDA graph and replayed (a memcpy node; how earlier runs of
      this bench measured "copy bandwidth": 2.72 TB/s);
    read: x.sum(), a read-only reduction, bytes read (the ceiling for read-only traffic such as decode's).
    warm_s: seconds of copies first, so the clocks have left idle."""
    n = gib << 29  # bf16 elements
    x = torch.randn(n, dtype=torch.bfloat16, device="cuda")
    y = torch.empty_like(x)
    end = time.time() + warm_s
    while time.time() < end:
        y.copy_(x)
        torch.cuda.synchronize()
    out = dict(copy=4 * n / event_time(lambda: y.copy_(x)) / 1e9,
               copy_graph=4 * n / graph_time(lambda: y.copy_(x), 5) / 1e9,
               read=2 * n / event_time(lambda: x.sum()) / 1e9)
    x = y = None  # free the 2 x gib GiB before the rows
    torch.cuda.empty_cache()
    print("  " + ", ".join(f"{k} {v:.0f} GB/s" for k, v in out.items()), flush=True)
    return out


def graph_time(fn, calls: int, replays: int = 5) -> float:
    """Seconds per call: fn captured `calls` times in one graph, replayed; median replay."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()  # warm-up (compiles, allocates) outside the capture
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(calls):
            fn()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / calls)
    del g
    return statistics.median(times)


class Row:
    def __init__(self, batch, heads_q, heads_kv, seq_k, head_dim, seq_q=1):
        self.batch, self.heads_q, self.heads_kv, self.seq_k, self.head_dim, self.seq_q = (
            batch, heads_q, heads_kv, seq_k, head_dim, seq_q)
        self.kv_bytes = 2 * 2 * batch * heads_kv * seq_k * head_dim
        self.bytes = self.kv_bytes + 2 * 2 * batch * heads_q * seq_q * head_dim

    def label(self):
        return f"d{self.head_dim} {self.heads_q}/{self.heads_kv} b{self.batch} n{self.seq_k}"

    def make_sets(self):
        n = max(1, min(MAX_SETS, math.ceil(ROTATE_BYTES / self.bytes)))
        sets = []
        self.kv_whole = []  # each set's K and V in one allocation, so one kernel can read both (same_size_read)
        for _ in range(n):  # SDPA's layout (B, H, N, D); ours reads it as layout "bhsd"
            q = torch.randn(self.batch, self.heads_q, self.seq_q, self.head_dim, device="cuda", dtype=torch.bfloat16)
            kv = torch.randn(2, self.batch, self.heads_kv, self.seq_k, self.head_dim, device="cuda",
                             dtype=torch.bfloat16)
            sets.append((q, kv[0], kv[1]))
            self.kv_whole.append(kv)
        return sets


READ_SOURCE = r"""
extern "C" __global__ void __launch_bounds__(1024) read_floor(const uint4* __restrict__ x, long long n16,
                                                              unsigned* __restrict__ sink) {
    const long long stride = (long long)gridDim.x * blockDim.x;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    for (; i + (UNROLL - 1) * stride < n16; i += UNROLL * stride) {
        uint4 v[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) v[u] = __ldcs(x + i + u * stride);  // streaming: no reuse
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n16; i += stride) {
        const uint4 v = __ldcs(x + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) sink[0] = acc;  // never true on random data; keeps the loads
}
"""


def read_kernel(unroll: int):
    """The plain read of READ_SOURCE with `unroll` 16-byte loads in flight a thread (CuPy compiles it once)."""
    import cupy

    return cupy.RawKernel(READ_SOURCE.replace("UNROLL", str(unroll)), "read_floor", options=("-std=c++17",))


def read_launch(arrays, blocks: int, threads: int, unroll: int):
    """A closure reading the next of `arrays` (torch tensors, sizes multiples of 16 bytes) with the plain read, on
    torch's current stream (so a torch CUDA graph captures it)."""
    import cupy

    fn, sink, it = read_kernel(unroll), torch.zeros(1, dtype=torch.int32, device="cuda"), itertools.cycle(arrays)

    def call():
        x = next(it)
        with cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream):
            fn((blocks,), (threads,), (x.data_ptr(), x.numel() * x.element_size() // 16, sink.data_ptr()))
    return call


def same_size_read(row: Row):
    """The plain read of the row's K/V bytes (the allocation holding a set's K and V), timed like the rest: what one
    kernel reading exactly these bytes reaches at this size, its launch and fill included."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    return read_launch(row.kv_whole, 8 * sms, 256, 2)


def ours(sets, config=None, num_splits=None):
    it = itertools.cycle(sets)
    return lambda: decode_attention(*next(it), causal=True, layout="bhsd", config=config, num_splits=num_splits)


def sdpa(sets, backend):
    it = itertools.cycle(sets)

    def call():
        q, k, v = next(it)
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, is_causal=False, enable_gqa=True)
    return call


def check(sets):
    """Our output against SDPA's math backend in fp32 on the first sequence of the first set."""
    q, k, v = (x[:1] for x in sets[0])
    o = decode_attention(q, k, v, layout="bhsd")
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), enable_gqa=True)
    return float((o.float() - ref).norm() / ref.norm())


def time_row(row: Row, rounds: int, impls: dict) -> dict:
    results = {name: [] for name in impls}
    for _ in range(rounds):  # interleaved: every implementation once per round
        for name, fn in impls.items():
            if results[name] is None:
                continue
            try:
                results[name].append(graph_time(fn, len(row.sets)))
            except Exception as exc:  # a backend that refuses the shape: n/a, with why
                results[name] = None
                print(f"  {row.label()} {name}: n/a ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
    out = {}
    for name, ts in results.items():
        if ts:
            med = statistics.median(ts)
            out[name] = dict(gbps=row.bytes / med / 1e9, us=med * 1e6, spread=(max(ts) - min(ts)) / med)
    return out


def rows_full():
    for d, (hq, hkv), b, n in itertools.product((128, 64), ((32, 8), (8, 1)), (1, 8, 64, 256),
                                                (1024, 8192, 32768, 131072)):
        row = Row(b, hq, hkv, n, d)
        if row.kv_bytes <= MAX_KV_BYTES:
            yield row


def rows_named(labels: str) -> list:
    """Rows by label ("d64 32/8 b1 n1024,d96 32/32 b8 n8192": head dim, query/KV heads, batch, cache length), in the
    order given; any head dim the decode kernel takes, not only the full table's."""
    rows = []
    for label in (x.strip() for x in labels.split(",")):
        m = re.fullmatch(r"d(\d+) (\d+)/(\d+) b(\d+) n(\d+)", label)
        if m is None:
            raise SystemExit(f"row {label!r}: expected 'd<head dim> <heads_q>/<heads_kv> b<batch> n<cache length>'")
        d, hq, hkv, b, n = map(int, m.groups())
        rows.append(Row(b, hq, hkv, n, d))
    return rows


def rows_quick():
    for d, (hq, hkv), b, n in ((128, (32, 8), 1, 32768), (128, (32, 8), 64, 8192), (128, (8, 1), 1, 32768),
                               (128, (32, 8), 256, 8192), (64, (8, 1), 8, 131072)):
        yield Row(b, hq, hkv, n, d)


HEADER = (f"{'row':28} {'KV MB':>8} {'splits':>6} {'ours GB/s':>9} {'x copy':>6} {'x read':>6} {'spread':>6} {'flash':>6} "
          f"{'cudnn':>6} {'effic':>6} {'x best':>6} {'err':>7} {'rd same':>7}")


def format_row(r: dict, copy: float, read: float = float("nan")) -> str:
    best = max((r[n]["gbps"] for n in SDPA if n in r), default=float("nan"))
    o = r["ours"]
    sdpa_cols = " ".join(f"{r[n]['gbps']:6.0f}" if n in r else f"{'n/a':>6}" for n in SDPA)
    return (f"{r['row']:28} {r['kv_bytes'] / 2**20:8.0f} {r['splits']:6d} {o['gbps']:9.0f} {o['gbps'] / copy:6.2f} {o['gbps'] / read:6.2f} "
            f"{o['spread']:6.1%} {sdpa_cols} {o['gbps'] / best:6.2f} {r['rel_err_vs_sdpa_math']:7.1e} {same_size_read_gbps(r):7.0f}")


def same_size_read_gbps(r: dict) -> float:
    """GB/s of same_size_read on the row's K/V bytes (nan where it was not timed)."""
    return r["kv_bytes"] / r["read"]["us"] / 1e3 if "read" in r else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="time our kernel's configs on the quick rows")
    ap.add_argument("--paged-sweep", action="store_true", help="paged configs on the d64 b32 n2048 row")
    ap.add_argument("--paged-choice", action="store_true",
                    help="bench_kvcache's paged rows: the served config against the other selections")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", help="these rows, by label (any head dim): 'd64 32/8 b1 n1024,d96 32/32 b8 n8192'")
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "bench_decode.json"))
    args = ap.parse_args()
    torch.manual_seed(0)
    start = copy_ceilings(warm_s=2.0)
    copy = start["copy"]
    print(f"{torch.cuda.get_device_name()}  copy {copy:.0f} GB/s (2 GiB y.copy_(x), read + write), read "
          f"{start['read']:.0f} GB/s (x.sum())", flush=True)
    if args.sweep:
        return sweep(copy)
    if args.paged_sweep or args.paged_choice:
        from bench_paged_decode import paged_choice, paged_sweep  # paged caches: benchmarks/bench_paged_decode.py

        return paged_sweep(copy) if args.paged_sweep else paged_choice(copy)
    records = []
    print(HEADER)
    for row in rows_named(args.rows) if args.rows else rows_quick() if args.quick else rows_full():
        row.sets = row.make_sets()
        impls = {"ours": ours(row.sets), **{n: sdpa(row.sets, be) for n, be in SDPA.items()},
                 "read": same_size_read(row)}
        err = check(row.sets)
        r = time_row(row, args.rounds, impls)
        r.update(row=row.label(), batch=row.batch, heads_q=row.heads_q, heads_kv=row.heads_kv, seq_k=row.seq_k,
                 head_dim=row.head_dim, kv_bytes=row.kv_bytes, bytes=row.bytes, rel_err_vs_sdpa_math=err,
                 splits=splits_used(row))
        records.append(r)
        print(format_row(r, copy), flush=True)
        del row.sets, row.kv_whole
        torch.cuda.empty_cache()
    end = copy_ceilings()
    copy_max = max(copy, end["copy"])  # the ratios below use the higher one: the harder bar
    read_max = max(start["read"], end["read"])
    print(f"\ncopy (y.copy_(x), read + write) {copy:.0f} GB/s at the start, {end['copy']:.0f} at the end; read "
          f"(x.sum()) {start['read']:.0f} / {end['read']:.0f}; graph-captured copy {start['copy_graph']:.0f} / "
          f"{end['copy_graph']:.0f}; x copy uses {copy_max:.0f}, x read {read_max:.0f}")
    print(HEADER)
    print("\n".join(format_row(r, copy_max, read_max) for r in records))
    bars(records, copy_max)
    Path(args.json).write_text(json.dumps(dict(ceilings=[start, end], device=torch.cuda.get_device_name(),
                                               rows=records), indent=1))


def splits_used(row: Row) -> int:
    """The split count our default path chose for this row (shapes only)."""
    from autoflash.ops import decode_launch
    from autoflash.ops.decode_launch import DecodeProblem
    from autoflash.serve import decode as decode_api

    p = DecodeProblem(row.batch, row.heads_q, row.heads_kv, row.seq_q, row.seq_k, row.head_dim, True)
    dev = torch.cuda.current_device()
    kernel = decode_api._kernel_for(decode_api._choose_config(None, "bf16", p, dev), dev)
    return decode_launch.choose_splits(kernel, p)


def bars(records, copy):
    """The issue's bars, row by row."""
    miss = []
    for r in records:
        ours_g = r["ours"]["gbps"]
        best = max((r[n]["gbps"] for n in SDPA if n in r), default=0)
        if ours_g < best:
            miss.append(f"{r['row']}: {ours_g / best:.2f}x best SDPA")
        if r["kv_bytes"] >= 256 << 20 and ours_g < 0.85 * copy:
            miss.append(f"{r['row']}: {ours_g / copy:.2f}x copy (KV >= 256 MB, bar 0.85)")
        if r["batch"] == 1 and r["seq_k"] == 32768 and ours_g < 0.6 * copy:
            miss.append(f"{r['row']}: {ours_g / copy:.2f}x copy (batch 1, 32k, bar 0.6; a same-size read: "
                        f"{same_size_read_gbps(r) / copy:.2f}x)")
    print(f"bars: {len(records)} rows, {len(miss)} misses" + "".join(f"\n  MISS {m}" for m in miss))


def _compile(cfg_dict):
    from autoflash.kernels.compile import compile_kernel
    from autoflash.kernels.config import OpConfig

    compile_kernel(OpConfig.from_dict(cfg_dict))


def precompile(configs):
    """Fill the compile cache from all CPU cores (one process per config) before timing."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_compile, [c.to_dict() for c in configs]))


def sweep(copy):
    """Our kernel over block_n x warps x stages x bulk_copy (heuristic splits) on the quick rows, then
    the best config of each small-batch row over forced split counts."""
    rows = list(rows_quick())
    spaces = {}
    for row in rows:
        key = {"dtype": "bf16", "head_dim": row.head_dim, "m_tiles": m_tiles_for(row.heads_q // row.heads_kv, row.head_dim)}
        space = [MMA.config("sm_90", key, block_n=bn, warps=w, stages=s, num_splits=0, bulk_copy=bulk, l2_prefetch=pf)
                 for bn, w, s, (bulk, pf) in itertools.product((16, 32, 64), (2, 4, 8), (2, 3, 4),
                                                               ((False, 0), (False, 128), (True, 0)))]
        spaces[row.label()] = [c for c in space if not c.problems()]
    precompile({c for cs in spaces.values() for c in cs})
    print(f"{'row':28} {'config':40} {'GB/s':>6} {'x copy':>6}")
    for row in rows:
        row.sets = row.make_sets()
        results = sorted(((row.bytes / graph_time(ours(row.sets, c), len(row.sets)) / 1e9, c)
                          for c in spaces[row.label()]), key=lambda x: -x[0])
        default = MMA.default("sm_90", DECODE.key_of(results[0][1]))
        for g, c in results[:5] + [x for x in results if x[1] == default][:1]:
            print(f"{row.label():28} {c.name[len('flash_decode_mma_sm_90_bf16_'):]:40} {g:6.0f} {g / copy:6.2f}")
        best = results[0][1]
        for ns in (1, 2, 4, 8, 16, 32, 64, 128, 256):
                g = row.bytes / graph_time(ours(row.sets, best, num_splits=ns), len(row.sets)) / 1e9
                print(f"{row.label():28} {'best, num_splits=' + str(ns):40} {g:6.0f} {g / copy:6.2f}")
        print(flush=True)
        del row.sets, row.kv_whole
        torch.cuda.empty_cache()



if __name__ == "__main__":
    main()
