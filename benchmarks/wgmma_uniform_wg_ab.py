"""flash_fwd_wgmma's UNIFORM_WG switch (the consumers' warpgroup index by a lane-0 shuffle, so the tile loop's slot,
parity and wgmma descriptors go to uniform registers; forward_wgmma.UNIFORM_WG, off) against the served kernel at kernel
level, beside SDPA's cuDNN. Issue 18: bf16 D 64 causal ran 123.5 / 361.5 us against cuDNN's 107.6 / 332.9 at
N 1024 / 4096, our ALU pipe 1.4-1.6x cuDNN's (benchmarks/ncu_fwd_weak_h200_2026-11-30_s8.txt); the switch takes ~55 of
~490 instructions a key tile off each consumer warp (the R2UR and 64-bit vector adds before each wgmma).

Rows: bf16/fp16 x D 64 x N 1024/4096 x causal and not (non-causal: the control), B*H*N = 64 x 4096, H = 16. Per row:
"served" (attention()'s config for the row, switch off), "uw" (the same config compiled with the switch on),
"served2" (the served kernel again, a second graph: the A/A control) and cuDNN. Every kernel is captured in a CUDA graph
of --calls launches and replayed in --rounds interleaved rounds (benchmarks/graph_timing.py); the table gives TFLOP/s
(median over rounds), x cuDNN, the spread, and uw/served, served2/served.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_uniform_wg_ab.py [--seq-lens 1024 4096] [--rounds 7] [--check] [--precompile]

--check also gives max |uw - served| per row (0 expected: the same arithmetic in the same order); the float64 checks are
tests/test_wgmma_uniform_wg_gpu.py. --precompile compiles every kernel a run would time (8 processes, disk cache).
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from common import sdpa_runner  # noqa: E402
from graph_timing import Impl, measure  # noqa: E402

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.kernels.loaded import LoadedKernel  # noqa: E402
from autoflash.kernels.render import render  # noqa: E402
from autoflash.ops import forward_wgmma  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402
from autoflash.ops.forward_launch import launch, plan  # noqa: E402
from autoflash.serve.api import choose_config  # noqa: E402

TOKENS, HEADS = 64 * 4096, 16
SHUFFLED = "const int wg = __shfl_sync(0xffffffffu, warpgroup - 1, 0);"


def compiled(cfg, switched: bool):
    """cfg compiled with UNIFORM_WG as given (the disk cache is keyed by the rendered source)."""
    forward_wgmma.UNIFORM_WG = switched
    try:
        assert (SHUFFLED in render(cfg)) is switched, f"UNIFORM_WG does not switch {cfg.name}"
        return compile_kernel(cfg)
    finally:
        forward_wgmma.UNIFORM_WG = False


def loaded(cfg, switched: bool, p: Problem, scale: float) -> LoadedKernel:
    kernel = LoadedKernel(compiled(cfg, switched))
    plan(kernel, p, scale)  # the launch plan does not depend on the switch
    r = kernel.compiled.report
    print(f"  {'uw' if switched else 'served'} {cfg.name}: {r.registers} registers, {r.spills} B spilled, "
          f"serialised {r.wgmma_serialized}", flush=True)
    return kernel


def row(dtype, d, causal, n, rounds, calls, check):
    arch, name = device_arch(0)
    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    p, scale = Problem(b, HEADS, HEADS, n, n, d, causal), d ** -0.5
    cfg = choose_config(arch, name, dtype, d, causal, n)
    kernels = {"served": loaded(cfg, False, p, scale), "uw": loaded(cfg, True, p, scale)}
    kernels["served2"] = kernels["served"]
    outs = {key: torch.empty_like(q) for key in kernels}

    def runner(key):
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
        return lambda: launch(kernels[key], *ptrs, p, scale, torch.cuda.current_stream().cuda_stream)

    work = 4.0 * b * HEADS * n * n * d / (2 if causal else 1)
    impls = [Impl(key, runner(key), calls=calls, work=work) for key in kernels]
    cudnn_run = sdpa_runner("sdpa_cudnn", q, k, v, causal)
    if cudnn_run is not None:
        impls.append(Impl("cudnn", cudnn_run, calls=calls, work=work))
    res = measure(impls, rounds)
    diff = ""
    if check:
        for key in ("served", "uw"):
            runner(key)()
        torch.cuda.synchronize()
        diff = f" | {(outs['uw'].float() - outs['served'].float()).abs().max().item():.2e}"
    cudnn = res.get("cudnn", {}).get("rate")
    cells = []
    for key in ("served", "uw", "served2"):
        r = res[key]
        vs = f"{r['rate'] / cudnn:.3f}x, " if cudnn else ""
        cells.append(f"{r['rate'] / 1e12:.0f} ({vs}{r['spread']:.1%})")
    uw, aa = (res[key]["rate"] / res["served"]["rate"] for key in ("uw", "served2"))
    short = cfg.name.replace("flash_fwd_wgmma_sm_90a_", "")
    print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {short} | " + " | ".join(cells)
          + f" | {cudnn / 1e12 if cudnn else float('nan'):.0f} | {uw:.3f}x | {aa:.3f}x{diff} |", flush=True)


def _compile(cfg, switched: bool) -> str:
    r = compiled(cfg, switched).report
    return f"{'uw' if switched else 'served'} {cfg.name}: {r.registers} registers, {r.spills} B spilled"


def precompile(args) -> None:
    arch, name = device_arch(0)
    served = {choose_config(arch, name, dtype, d, causal, n) for n in args.seq_lens for dtype in args.dtypes
              for d in args.head_dims for causal in (False, True)}
    jobs = sorted(((c, s) for c in served for s in (False, True)), key=lambda j: (j[0].name, j[1]))
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile, *zip(*jobs)):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[1024, 4096])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--head-dims", nargs="+", type=int, default=[64])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    if args.precompile:
        return precompile(args)
    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "TFLOP/s (x cuDNN, spread)")
    print("| row | served config | served | uw | served2 (A/A) | cuDNN | uw/served | served2/served"
          + (" | max diff" if args.check else "") + " |")
    for n in args.seq_lens:
        for dtype in args.dtypes:
            for d in args.head_dims:
                for causal in (True, False):
                    row(dtype, d, causal, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
