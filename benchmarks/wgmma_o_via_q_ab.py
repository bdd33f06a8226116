"""flash_fwd_wgmma's O_VIA_Q switch (O staged over Qi's rows and stored by TMA; forward_wgmma.O_VIA_Q, off) against the
served kernel (registers store O) at kernel level, beside SDPA's cuDNN. Issue 18: bf16 D 256 causal N 1024 ran 0.86x
cuDNN, its warps stalled on lg_throttle from the register store (benchmarks/ncu_fwd_weak_h200_2026-11-30_s8.txt).

Rows: bf16/fp16 x D 256 x N 1024/4096 x causal and not, B*H*N = 64 x 4096, H = 16 (the sixth session's o_store A/B shape). Per row:
"served" (attention()'s config for the row, switch off), "oq" (the same config compiled and planned with the switch
on), "served2" (the served kernel again, a second graph: the A/A control, the noise floor) and cuDNN. Every kernel is
captured in a CUDA graph of --calls launches and replayed in --rounds interleaved rounds (benchmarks/graph_timing.py);
the table gives TFLOP/s (median over rounds), x cuDNN, the spread, and oq/served, served2/served.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_o_via_q_ab.py [--seq-lens 1024 4096] [--rounds 7] [--check] [--precompile]

--check also gives max |oq - served| per row (bf16/fp16 rounding); the float64 checks are
tests/test_wgmma_o_via_q_gpu.py. --precompile compiles every kernel a run would time (8 processes, disk cache).
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
from autoflash.ops import forward_wgmma  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402
from autoflash.ops.forward_launch import launch, plan  # noqa: E402
from autoflash.serve.api import choose_config  # noqa: E402

WG = forward_wgmma.WGMMA
TOKENS, HEADS = 64 * 4096, 16


def compiled(cfg, switched: bool):
    """cfg compiled with O_VIA_Q as given (the disk cache is keyed by the rendered source)."""
    forward_wgmma.O_VIA_Q = switched
    try:
        assert WG.o_via_q(cfg) is switched, f"O_VIA_Q does not switch {cfg.name}"
        return compile_kernel(cfg)
    finally:
        forward_wgmma.O_VIA_Q = False


def loaded(cfg, switched: bool, p: Problem, scale: float) -> LoadedKernel:
    """Compiled, loaded and planned for p with the switch as given: the plan (O's map or not) is kept by the kernel."""
    kernel = LoadedKernel(compiled(cfg, switched))
    forward_wgmma.O_VIA_Q = switched
    try:
        plan(kernel, p, scale)
    finally:
        forward_wgmma.O_VIA_Q = False
    r = kernel.compiled.report
    print(f"  {'oq' if switched else 'served'} {cfg.name}: {r.registers} registers, {r.spills} B spilled, "
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
    kernels = {"served": loaded(cfg, False, p, scale), "oq": loaded(cfg, True, p, scale)}
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
        for key in ("served", "oq"):
            runner(key)()
        torch.cuda.synchronize()
        diff = f" | {(outs['oq'].float() - outs['served'].float()).abs().max().item():.2e}"
    cudnn = res.get("cudnn", {}).get("rate")
    cells = []
    for key in ("served", "oq", "served2"):
        r = res[key]
        vs = f"{r['rate'] / cudnn:.3f}x, " if cudnn else ""
        cells.append(f"{r['rate'] / 1e12:.0f} ({vs}{r['spread']:.1%})")
    oq, aa = (res[key]["rate"] / res["served"]["rate"] for key in ("oq", "served2"))
    short = cfg.name.replace("flash_fwd_wgmma_sm_90a_", "")
    print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {short} | " + " | ".join(cells)
          + f" | {cudnn / 1e12 if cudnn else float('nan'):.0f} | {oq:.3f}x | {aa:.3f}x{diff} |", flush=True)


def _compile(cfg, switched: bool) -> str:
    r = compiled(cfg, switched).report
    return f"{'oq' if switched else 'served'} {cfg.name}: {r.registers} registers, {r.spills} B spilled"


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
    ap.add_argument("--head-dims", nargs="+", type=int, default=[256])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    if args.precompile:
        return precompile(args)
    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "TFLOP/s (x cuDNN, spread)")
    print("| row | served config | served | oq | served2 (A/A) | cuDNN | oq/served | served2/served"
          + (" | max diff" if args.check else "") + " |")
    for n in args.seq_lens:
        for dtype in args.dtypes:
            for d in args.head_dims:
                for causal in (False, True):
                    row(dtype, d, causal, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
