"""Where flash_fwd_wgmma's sliding window (causal, window_size (L, 0)) loses against the plain causal kernel
(issue 17's bar: >= 0.9x per visible pair), at kernel level (CUDA graphs, interleaved rounds, spread).

bf16, H 16, B * N = 32768 (bench_variants.py's shapes), D 128 by default. Rows, all on the same tiles unless named:
  plain        the causal kernel (no WINDOW code)
  win L        the WINDOW kernel with window (L, 0), L in --lefts
  win huge     the WINDOW kernel with window (2^20, 0): the plain kernel's work through the WINDOW code
  served ...   what attention() serves for the plain causal and the window key (for "where it stands")
Each row gives TFLOP/s counting visible pairs, the ratio to `plain` per visible pair, and the key tiles it
computes. Then a least-squares fit over the rows of one kernel, time = a * (key tiles) + c * (query tiles),
gives the cost of a query tile beyond its key tiles (c / a, in key-tile units): pipeline fill/drain, epilogue,
the extra masked tiles at the window's edge.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_window_probe.py [--head-dim 128] [--seq 4096] [--tiles 128x128s2]
        [--lefts 1024 2048 3072] [--rounds 5] [--precompile]
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash import KernelConfig  # noqa: E402
from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402

WG = TEMPLATES["flash_fwd_wgmma"]
TOKENS, HEADS, HUGE = 32768, 16, 1 << 20


def tiles_config(d: int, spec: str, window: bool) -> KernelConfig:
    """'128x128s2' -> flash_fwd_wgmma br128 bc128 s2 causal (window or not)."""
    bm, rest = spec.split("x")
    bn, st = rest.split("s")
    bm, bn, st = int(bm), int(bn), int(st)
    return KernelConfig("flash_fwd_wgmma", "sm_90a", "bf16", d, True, bm, bn, 4 * (bm // 64 + 1), st, window=window)


def served(d: int, n: int, window: bool) -> KernelConfig:
    from autoflash.serve.api import choose_config

    return choose_config("sm_90", "NVIDIA H200", "bf16", d, True, n, {"window": True} if window else {})


def work_tiles(cfg: KernelConfig, n: int, left: int) -> tuple[int, int]:
    """(key tiles, query tiles) one (batch, head) computes: the kernel's item bounds (decode), dense, offset 0."""
    tiles = 0
    q_tiles = -(-n // cfg.block_m)
    for t in range(q_tiles):
        q0 = t * cfg.block_m
        k_end = min(n, q0 + cfg.block_m)
        k_begin = max(0, q0 - left) if cfg.window else 0
        kt0 = k_begin // cfg.block_n
        tiles += max(1, -(-k_end // cfg.block_n) - kt0)
    return tiles, q_tiles


def kernels(args) -> list[tuple[str, KernelConfig, int]]:
    """(row name, config, window left (-1: plain)) of every timed row."""
    d, n = args.head_dim, args.seq
    rows = [("plain", tiles_config(d, args.tiles, False), -1)]
    rows += [(f"win {left}", tiles_config(d, args.tiles, True), left) for left in args.lefts]
    rows += [("win huge", tiles_config(d, args.tiles, True), HUGE)]
    base = tiles_config(d, args.tiles, True)
    if WG.o_store_rule(base):  # the same window kernel storing O from registers (the store's share)
        rows += [(f"win {args.lefts[0]} ostore0", base.replace(o_store=0), args.lefts[0])]
    rows += [("served plain", served(d, n, False), -1), (f"served win {args.lefts[0]}", served(d, n, True),
                                                         args.lefts[0])]
    return rows


def _compile(cfg: KernelConfig) -> str:
    r = compile_kernel(cfg).report
    return f"{cfg.name}: {r.registers} registers, {r.spills} B spilled"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--tiles", default="128x128s2")
    ap.add_argument("--lefts", type=int, nargs="+", default=[1024, 2048, 3072])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = kernels(args)
    if args.precompile:
        jobs = sorted({cfg for _, cfg, _ in rows}, key=lambda c: c.name)
        with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, jobs):
                print(line, flush=True)
        return
    run(args, rows)


def run(args, rows) -> None:
    import torch

    from graph_timing import Impl, measure

    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import launch, plan

    d, n = args.head_dim, args.seq
    b = max(1, TOKENS // n)
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(torch.bfloat16) for _ in range(3))
    scale = d ** -0.5
    loaded, impls, meta = {}, [], {}
    for name, cfg, left in rows:
        p = Problem(b, HEADS, HEADS, n, n, d, True, window_left=left if left >= 0 else -1,
                    window_right=0 if left >= 0 else -1)
        if cfg not in loaded:
            loaded[cfg] = LoadedKernel(compile_kernel(cfg))
        kernel = loaded[cfg]
        plan(kernel, p, scale)
        out = torch.empty_like(q)
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), 0)
        pairs = Problem(1, 1, 1, n, n, d, True, window_left=min(left, n) if left >= 0 else -1,
                        window_right=0 if left >= 0 else -1).visible_pairs()
        work = 4.0 * b * HEADS * d * pairs
        # the stream is read at each call: graph capture runs the launches on its own stream
        impls.append(Impl(name, (lambda kk=kernel, pp=p, o=ptrs: launch(kk, *o, pp, scale,
                                                                       torch.cuda.current_stream().cuda_stream)),
                          calls=args.calls, work=work))
        meta[name] = (cfg, left, out, work_tiles(cfg, n, left if left >= 0 else n))
    res = measure(impls, args.rounds)
    print(f"{torch.cuda.get_device_name()}; bf16 D {d} N {n} B {b} H {HEADS}; graphs of {args.calls}, "
          f"{args.rounds} rounds; TFLOP/s per visible pair")
    print("| row | config | TFLOP/s (spread) | x plain per visible pair | us | key tiles / query tiles per (b, h) |")
    plain = res["plain"].get("rate")
    for name, (cfg, left, _, (kt, qt)) in meta.items():
        r = res[name]
        if r.get("rate") is None:
            print(f"| {name} | {cfg.name} | n/a: {r.get('na')} |")
            continue
        ratio = r["rate"] / plain if plain else float("nan")
        print(f"| {name} | {cfg.name.replace('flash_fwd_wgmma_sm_90a_', '')} | {r['rate'] / 1e12:.0f} "
              f"({r['spread']:.1%}) | {ratio:.3f}x | {r['s'] * 1e6:.1f} | {kt} / {qt} |", flush=True)
    # the fit over one kernel's rows (the WINDOW rows)
    pts = [(meta[nm][3], res[nm]["s"]) for nm in meta if nm.startswith("win") and "huge" not in nm and res[nm].get("s")]
    if len(pts) < 2:
        return
    a_mat = np.array([[kt, qt] for (kt, qt), _ in pts], dtype=float)
    t = np.array([s for _, s in pts])
    (a, c), *_ = np.linalg.lstsq(a_mat, t, rcond=None)
    resid = float(np.max(np.abs(a_mat @ np.array([a, c]) - t) / t))
    print(f"fit: time = a * key tiles + c * query tiles: a = {a * 1e6:.3f} us, "
          f"c = {c * 1e6:.3f} us = {c / a:.2f} key tiles per query tile (max residual {resid:.1%})")
    if res["plain"].get("s"):
        kt, qt = meta["plain"][3]
        cp = (res["plain"]["s"] - a * kt) / qt
        print(f"plain causal with the window fit's a: c = {cp * 1e6:.3f} us = {cp / a:.2f} key tiles per query tile")

if __name__ == "__main__":
    main()
