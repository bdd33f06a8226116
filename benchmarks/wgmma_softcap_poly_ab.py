"""flash_fwd_wgmma's SOFTCAP_POLY switch (P's exp2 of K of each thread's block_n / 4 columns a row by an FMA-pipe
polynomial instead of MUFU; forward_wgmma.SOFTCAP_POLY, 0 = off) against the served softcap kernel at kernel level,
beside the served plain kernel. Issue 17: bf16 softcap ran 0.59x (D 128) / 0.49x (D 64) of plain per visible pair,
MUFU-bound (two MUFU ops a score; benchmarks/NOTES.md "Eighth session", softcap_rcp).

Rows: bf16, softcap 30, D 128 and 64, causal and not, N 4096 and 16384 (B*H*N = 64 x 4096, H 16). Per row:
"served" (attention()'s softcap config, switch off), "K<n>" (the same config compiled and planned with
SOFTCAP_POLY = n, one per --columns value), "served2" (the served kernel again, a second graph: the A/A control, the
noise floor) and "plain" (the served plain config of the same causality: the ratio per visible pair). Every kernel is
captured in a CUDA graph of --calls launches and replayed in --rounds interleaved rounds (benchmarks/graph_timing.py):
TFLOP/s of visible pairs (median over rounds), x plain, the spread, and K<n>/served, served2/served.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_softcap_poly_ab.py [--columns 16 24] [--seq-lens 4096 16384] [--check]
    PYTHONPATH=$PWD python3 benchmarks/wgmma_softcap_poly_ab.py --precompile

--check also gives max |K<n> - served| per row (a bf16 rounding is expected); the float64 checks are
tests/test_wgmma_softcap_poly_gpu.py. --precompile compiles every kernel a run would time (8 processes, disk cache).
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.ops import forward_wgmma  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402

TOKENS, HEADS, CAP = 64 * 4096, 16, 30.0
DEVICE = "NVIDIA H200"  # whose tuned entries are timed as "served" (the table names the GPU it ran on)


def configs(dtype: str, d: int, causal: bool, n: int) -> dict:
    """The served softcap and plain configs of the row."""
    from autoflash.serve.api import choose_config

    return {name: choose_config("sm_90", DEVICE, dtype, d, causal, n, {"softcap": name == "softcap"})
            for name in ("softcap", "plain")}


def compiled(cfg, columns: int):
    """cfg compiled with SOFTCAP_POLY = columns (the disk cache is keyed by the rendered source)."""
    with mock.patch.object(forward_wgmma, "SOFTCAP_POLY", columns):
        if cfg.softcap:
            assert forward_wgmma.WGMMA.template_values(cfg)["softcap_poly"] == min(columns, cfg.block_n // 4)
        return compile_kernel(cfg)


def _compile(cfg, columns: int) -> str:
    r = compiled(cfg, columns).report
    return (f"{cfg.name} K {columns}: {r.registers} registers, {r.spills} B spilled, "
            f"serialised {r.wgmma_serialized}")


def row(dtype, d, causal, n, columns, rounds, calls, check):
    import torch

    from graph_timing import Impl, measure

    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import launch, plan

    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    scale = d ** -0.5
    work = 4.0 * b * HEADS * n * n * d / (2 if causal else 1)  # visible pairs, as `autoflash bench` counts them
    cfgs = configs(dtype, d, causal, n)
    runs = [("served", cfgs["softcap"], 0)] + [(f"K{c}", cfgs["softcap"], c) for c in columns]
    runs += [("plain", cfgs["plain"], 0)]
    kernels, impls, outs = {}, [], {}
    for key, cfg, c in runs:
        p = Problem(b, HEADS, HEADS, n, n, d, causal, softcap=CAP if cfg.softcap else 0.0)
        kernel = LoadedKernel(compiled(cfg, c))
        with mock.patch.object(forward_wgmma, "SOFTCAP_POLY", c):
            plan(kernel, p, scale)  # the plan keeps the switched kernel's arguments
        r = kernel.compiled.report
        assert r.spills == 0 and not r.wgmma_serialized, (key, r)
        kernels[key] = (kernel, p)
    kernels["served2"] = kernels["served"]
    for key, (kernel, p) in kernels.items():
        outs[key] = torch.empty_like(q)
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
        impls.append(Impl(key, (lambda kk=kernel, o=ptrs, pp=p: launch(kk, *o, pp, scale,
                                                                         torch.cuda.current_stream().cuda_stream)),
                          calls=calls, work=work))
    res = measure(impls, rounds)
    tiles = cfgs["softcap"].name.replace("flash_fwd_wgmma_sm_90a_", "")
    if any(r.get("rate") is None for r in res.values()):
        print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {tiles} | n/a: "
              f"{[r.get('na') for r in res.values()]} |")
        return
    diff = ""
    if check:
        for impl in impls:
            impl.kernel()
        torch.cuda.synchronize()
        ref = outs["served"].float()
        diff = " | " + ", ".join(f"{(outs[f'K{c}'].float() - ref).abs().max().item():.1e}" for c in columns)
    plain = res["plain"]["rate"]
    keys = ["served"] + [f"K{c}" for c in columns] + ["served2"]
    cells = [f"{res[x]['rate'] / 1e12:.0f} ({res[x]['rate'] / plain:.3f}x, {res[x]['spread']:.1%})" for x in keys]
    ratios = [f"{res[x]['rate'] / res['served']['rate']:.3f}x" for x in keys[1:]]
    print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {tiles} | " + " | ".join(cells)
          + f" | {plain / 1e12:.0f} ({res['plain']['spread']:.1%}) | " + " | ".join(ratios) + diff + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", nargs="+", type=int, default=[16, 24], help="SOFTCAP_POLY values to time")
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[4096, 16384])
    ap.add_argument("--dtypes", nargs="+", default=["bf16"])
    ap.add_argument("--head-dims", nargs="+", type=int, default=[128, 64])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = [(dt, d, causal, n) for n in args.seq_lens for dt in args.dtypes for d in args.head_dims
            for causal in (False, True)]
    if args.precompile:
        jobs = sorted({(cfgs["softcap"], c) for r in rows for cfgs in [configs(*r)] for c in [0] + args.columns}
                      | {(configs(*r)["plain"], 0) for r in rows}, key=lambda j: (j[0].name, j[1]))
        with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, *zip(*jobs)):
                print(line, flush=True)
        return
    import torch

    print(f"{torch.cuda.get_device_name()}; B*H*N = {TOKENS}, H {HEADS}; softcap {CAP}; graphs of {args.calls} "
          f"launches, {args.rounds} interleaved rounds; TFLOP/s of visible pairs (x served plain, spread)")
    ks = [f"K{c}" for c in args.columns]
    print("| row | softcap tiles | served | " + " | ".join(ks) + " | served2 (A/A) | plain | "
          + " | ".join(f"{k}/served" for k in ks) + " | served2/served"
          + (" | max diff " + ", ".join(ks) if args.check else "") + " |")
    for r in rows:
        row(*r, args.columns, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
