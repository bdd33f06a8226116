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

--switch NAME=VALUE (repeatable) sets WgmmaTemplate class attributes (experimental switches) for the extra rows
"...+sw", e.g. --switch causal_trim=1.
"""
from __future__ import annotations

import argparse
import contextlib
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


def kernels(args, switch) -> list[tuple[str, KernelConfig, int, bool]]:
    """(row name, config, window left (-1: plain), switched) of every timed row."""
    d, n = args.head_dim, args.seq
    rows = [("plain", tiles_config(d, args.tiles, False), -1, False)]
    rows += [(f"win {left}", tiles_config(d, args.tiles, True), left, False) for left in args.lefts]
    rows += [("win huge", tiles_config(d, args.tiles, True), HUGE, False)]
    base = tiles_config(d, args.tiles, True)
    if WG.o_store_rule(base):  # the same window kernel storing O from registers (the store's share)
        rows += [(f"win {args.lefts[0]} ostore0", base.replace(o_store=0), args.lefts[0], False)]
    if switch:
        rows += [(name + " +sw", cfg, left, True) for name, cfg, left, _ in list(rows)]
    rows += [("served plain", served(d, n, False), -1, False), (f"served win {args.lefts[0]}", served(d, n, True),
                                                                args.lefts[0], False)]
    return rows


@contextlib.contextmanager
def switched(switch):
    """WgmmaTemplate's class attributes set to the (name, value) pairs of `switch` inside (None: nothing)."""
    old = [(name, getattr(WG, name)) for name, _ in switch or ()]
    for name, value in switch or ():
        setattr(WG, name, value)
    try:
        yield
    finally:
        for name, value in old:
            setattr(WG, name, value)


def _compile(cfg: KernelConfig, switch) -> str:
    with switched(switch):
        r = compile_kernel(cfg).report
    return f"{cfg.name}{' +sw' if switch else ''}: {r.registers} registers, {r.spills} B spilled"


def parse_switch(texts: list | None):
    if not texts:
        return None
    return tuple((text.split("=")[0], int(text.split("=")[1])) for text in texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--tiles", default="128x128s2")
    ap.add_argument("--lefts", type=int, nargs="+", default=[1024, 2048, 3072])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--switch", action="append", default=None)
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    switch = parse_switch(args.switch)
    rows = kernels(args, switch)
    if args.precompile:
        jobs = sorted({(cfg, switch if sw else None) for _, cfg, _, sw in rows}, key=lambda j: (j[0].name, bool(j[1])))
        with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, *zip(*jobs)):
                print(line, flush=True)
        return
    run(args, rows, switch)


def run(args, rows, switch) -> None:
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
    for name, cfg, left, sw in rows:
        key = (cfg, sw)
        p = Problem(b, HEADS, HEADS, n, n, d, True, window_left=left if left >= 0 else -1,
                    window_right=0 if left >= 0 else -1)
        with switched(switch if sw else None):  # the plan keeps the switched kernel's arguments
            if key not in loaded:
                loaded[key] = LoadedKernel(compile_kernel(cfg))
            kernel = loaded[key]
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
        meta[name] = (cfg, left, sw, out, work_tiles(cfg, n, left if left >= 0 else n))
    res = measure(impls, args.rounds)
    print(f"{torch.cuda.get_device_name()}; bf16 D {d} N {n} B {b} H {HEADS}; graphs of {args.calls}, "
          f"{args.rounds} rounds; TFLOP/s per visible pair")
    print("| row | config | TFLOP/s (spread) | x plain per visible pair | us | key tiles / query tiles per (b, h) |")
    plain = {sw: res[name]["rate"] for name, (_, left, sw, _, _) in meta.items() if name.startswith("plain")
             and res[name].get("rate")}
    for name, (cfg, left, sw, _, (kt, qt)) in meta.items():
        r = res[name]
        if r.get("rate") is None:
            print(f"| {name} | {cfg.name} | n/a: {r.get('na')} |")
            continue
        ratio = r["rate"] / plain[sw] if sw in plain else float("nan")
        print(f"| {name} | {cfg.name.replace('flash_fwd_wgmma_sm_90a_', '')} | {r['rate'] / 1e12:.0f} "
              f"({r['spread']:.1%}) | {ratio:.3f}x | {r['s'] * 1e6:.1f} | {kt} / {qt} |", flush=True)
    for sw in sorted({m[2] for m in meta.values()}):  # the fit over one kernel's rows (the WINDOW rows)
        pts = [(meta[nm][4], res[nm]["s"]) for nm in meta if nm.startswith("win") and "huge" not in nm
               and meta[nm][2] == sw and res[nm].get("s")]
        if len(pts) < 2:
            continue
        a_mat = np.array([[kt, qt] for (kt, qt), _ in pts], dtype=float)
        t = np.array([s for _, s in pts])
        (a, c), *_ = np.linalg.lstsq(a_mat, t, rcond=None)
        resid = float(np.max(np.abs(a_mat @ np.array([a, c]) - t) / t))
        print(f"fit{' +sw' if sw else ''}: time = a * key tiles + c * query tiles: a = {a * 1e6:.3f} us, "
              f"c = {c * 1e6:.3f} us = {c / a:.2f} key tiles per query tile (max residual {resid:.1%})")
    if "plain" in res and res["plain"].get("s"):
        fit_pts = [(meta[nm][4], res[nm]["s"]) for nm in meta if nm.startswith("win") and "huge" not in nm
                   and not meta[nm][2] and res[nm].get("s")]
        if len(fit_pts) >= 2:
            a_mat = np.array([[kt, qt] for (kt, qt), _ in fit_pts], dtype=float)
            (a, c), *_ = np.linalg.lstsq(a_mat, np.array([s for _, s in fit_pts]), rcond=None)
            kt, qt = meta["plain"][4]
            cp = (res["plain"]["s"] - a * kt) / qt
            print(f"plain causal with the window fit's a: c = {cp * 1e6:.3f} us = {cp / a:.2f} key tiles per query tile")


if __name__ == "__main__":
    main()
