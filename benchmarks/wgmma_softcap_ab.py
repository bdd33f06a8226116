"""flash_fwd_wgmma's softcap by a MUFU reciprocal (WgmmaTemplate.softcap_rcp, helper SC) at kernel level.

Rows: bf16, non-causal, N 4096, B*H*N = 64 x 4096, H 16 (as `autoflash bench`), D 128 and 64. Each row times the
served softcap config (the H200's tuned entry) with the switch off and on (the same kernel name: built and planned
under the switch) and the served plain config, so the table gives each softcap kernel's rate per visible pair as a
ratio to plain's (helper SA's census predicted off 0.61x / 0.50x -> on 0.72-0.78x / 0.58-0.62x, D 128 / 64). Every
kernel is captured in a CUDA graph of --calls launches and replayed in interleaved rounds (benchmarks/graph_timing.py):
median TFLOP/s and spread over the rounds. Softcap 30 on scores of scale 1 / sqrt(d).

    PYTHONPATH=$PWD python3 benchmarks/wgmma_softcap_ab.py [--rows d128:4096 d64:4096] [--rounds 7] [--check]
    PYTHONPATH=$PWD python3 benchmarks/wgmma_softcap_ab.py --precompile

--check compares the switched kernel's output with the unswitched one's on the same inputs (max |diff|, and the
largest relative to max |O|: a bf16 rounding or two is expected, the series and the rcp differ by ~1e-7 cap);
--precompile only compiles every kernel (4 processes).
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402

WG = TEMPLATES["flash_fwd_wgmma"]
TOKENS, HEADS, CAP = 64 * 4096, 16, 30.0
DEVICE = "NVIDIA H200"  # whose tuned entries are timed as "served" (the table names the GPU it ran on)


@contextlib.contextmanager
def switch(on: bool):
    old = WG.softcap_rcp
    WG.softcap_rcp = int(on)
    try:
        yield
    finally:
        WG.softcap_rcp = old


def configs(dtype: str, d: int, n: int) -> dict:
    """The served softcap and plain configs (non-causal)."""
    from autoflash.serve.api import choose_config

    return {flag: choose_config("sm_90", DEVICE, dtype, d, False, n, {"softcap": flag == "softcap"})
            for flag in ("softcap", "plain")}


def _compile(cfg, on: bool) -> str:
    with switch(on):
        r = compile_kernel(cfg).report
    return f"{cfg.name} softcap_rcp={int(on)}: {r.registers} registers, {r.spills} B spilled"


def row(dtype, d, n, rounds, calls, check):
    import torch

    from graph_timing import Impl, measure

    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import launch, plan

    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    scale = d ** -0.5
    work = 4.0 * b * HEADS * n * n * d  # non-causal: every pair visible
    cfgs = configs(dtype, d, n)
    impls, outs = [], {}
    kernels = (("off", cfgs["softcap"], False), ("on", cfgs["softcap"], True), ("plain", cfgs["plain"], False))
    for name, cfg, on in kernels:
        p = Problem(b, HEADS, HEADS, n, n, d, False, softcap=CAP if cfg.softcap else 0.0)
        with switch(on):
            kernel = LoadedKernel(compile_kernel(cfg))
            plan(kernel, p, scale)  # the plan keeps the switched kernel's arguments
        outs[name] = torch.empty_like(q)
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[name].data_ptr(), 0)
        impls.append(Impl(name, (lambda kk=kernel, o=ptrs, pp=p: launch(kk, *o, pp, scale,
                                                                         torch.cuda.current_stream().cuda_stream)),
                          calls=calls, work=work))
    res = measure(impls, rounds)
    tiles = cfgs["softcap"].name.replace("flash_fwd_wgmma_sm_90a_", "")
    if any(res[name].get("rate") is None for name in ("off", "on", "plain")):
        print(f"| {dtype} d{d} N{n} | {tiles} | n/a: {[res[x].get('na') for x in ('off', 'on', 'plain')]} |")
        return
    diff = ""
    if check:
        for impl in impls[:2]:
            impl.kernel()
        torch.cuda.synchronize()
        delta = (outs["on"].float() - outs["off"].float()).abs().max().item()
        diff = f" | {delta:.2e} ({delta / outs['off'].float().abs().max().item():.1e} of max)"
    plain = res["plain"]["rate"]
    cells = [f"{res[x]['rate'] / 1e12:.0f} ({res[x]['rate'] / plain:.3f}x, {res[x]['spread']:.1%})"
             for x in ("off", "on")]
    print(f"| {dtype} d{d} N{n} | {tiles} | {cells[0]} | {cells[1]} | {plain / 1e12:.0f} "
          f"({res['plain']['spread']:.1%}) | {res['on']['rate'] / res['off']['rate']:.3f}x{diff} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=["d128:4096", "d64:4096"])
    ap.add_argument("--dtypes", nargs="+", default=["bf16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = [(int(r.split(":")[0][1:]), int(r.split(":")[1])) for r in args.rows]
    if args.precompile:
        jobs = sorted({(cfg, on and cfg.softcap) for d, n in rows for dt in args.dtypes
                       for cfg in configs(dt, d, n).values() for on in (False, True)},
                      key=lambda j: (j[0].name, j[1]))
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, *zip(*jobs)):
                print(line, flush=True)
        return
    import torch

    print(f"{torch.cuda.get_device_name()}; non-causal, B*H*N = {TOKENS}, H {HEADS}, softcap {CAP}; graphs of "
          f"{args.calls} launches, {args.rounds} interleaved rounds; TFLOP/s (x served plain, spread)")
    print("| row | softcap tiles | softcap_rcp off | softcap_rcp on | plain | on/off"
          + (" | max diff" if args.check else "") + " |")
    for d, n in rows:
        for dtype in args.dtypes:
            row(dtype, d, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
