"""flash_fwd_wgmma's WG_TILES (forward_wgmma, off: causal 192-row tiles where each consumer warpgroup stops after its
own last key tile) at kernel level: 192 x 128 causal tiles (two and three stages) with the switch off and on, beside the
served entry (attention()'s config: 128 x 128 at D 64 causal) and SDPA's cuDNN. Issue 18: bf16 D 64 causal N 1024 is
the one forward row below cuDNN (0.99x); 192-row causal tiles compute 80 warpgroup-tiles at N 1024 where 128-row ones
compute 72, and the switch brings them to 72 (tests/test_wgmma_wg_tiles.py counts them; N 4096: 1088 -> 1056).

Rows (B*H*N = 64 x 4096, H = 16): bf16/fp16 D 64 causal N 1024 and N 4096. Each kernel is a CUDA graph of --calls
launches replayed in --rounds interleaved rounds (benchmarks/graph_timing.py); the table gives TFLOP/s (median over
rounds, causal counts half the work), x cuDNN and the spread, then on/off per stage count and the best 192-row kernel
over the served one.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_wg_tiles_ab.py [--rounds 7] [--check] [--precompile]

--check also gives max |x - served| over the kernels and max |on - off| (a stopped warpgroup skips only key tiles it
masks wholly, whose terms are exact zeros with an unchanged row max: 0 expected); the float64 checks are
tests/test_wgmma_wg_tiles_gpu.py. --precompile compiles every kernel a run would time (8 processes, disk cache).
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash import KernelConfig  # noqa: E402
from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.ops import forward_wgmma  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402
from autoflash.serve.api import choose_config  # noqa: E402

TOKENS, HEADS, D = 64 * 4096, 16, 64
ROWS = [(t, n) for n in (1024, 4096) for t in ("bf16", "fp16")]
STAGES = (2, 3)


class switch:
    """WG_TILES set to `on` inside the block (it changes the source only)."""
    def __init__(self, on):
        self.on = on

    def __enter__(self):
        self.old, forward_wgmma.WG_TILES = forward_wgmma.WG_TILES, self.on

    def __exit__(self, *exc):
        forward_wgmma.WG_TILES = self.old


def br192(dtype, stages):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, D, True, 192, 128, 16, stages)


def kernels_of(dtype, n) -> dict:
    """label -> (config, switch): the served entry (as served), then 192 x 128 per stage count, off and on."""
    arch, name = device_arch(0)
    out = {"served": (choose_config(arch, name, dtype, D, True, n), False)}
    for s in STAGES:
        out[f"s{s} off"], out[f"s{s} on"] = (br192(dtype, s), False), (br192(dtype, s), True)
    return out


def compiled(cfg, on):
    with switch(on):
        return compile_kernel(cfg)


def describe(label, cfg, on) -> str:
    r = compiled(cfg, on).report
    return (f"  {label} {cfg.name}: {r.registers} registers, {r.spills} B spilled, stack {r.stack_frame} B, "
            f"serialised {r.wgmma_serialized}")


def row(dtype, n, rounds, calls, check):
    import torch

    from common import sdpa_runner
    from graph_timing import Impl, measure
    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import launch, plan

    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n)
    q, k, v = (torch.randn(b, HEADS, n, D, device="cuda", generator=g).to(tdt) for _ in range(3))
    p, scale = Problem(b, HEADS, HEADS, n, n, D, True), D ** -0.5
    kernels = {}
    for label, (cfg, on) in kernels_of(dtype, n).items():
        print(describe(label, cfg, on), flush=True)
        kernels[label] = LoadedKernel(compiled(cfg, on))
        plan(kernels[label], p, scale)
    outs = {key: torch.empty_like(q) for key in kernels}

    def runner(key):
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
        return lambda: launch(kernels[key], *ptrs, p, scale, torch.cuda.current_stream().cuda_stream)

    work = 4.0 * b * HEADS * n * n * D / 2
    impls = [Impl(key, runner(key), calls=calls, work=work) for key in kernels]
    cudnn_run = sdpa_runner("sdpa_cudnn", q, k, v, True)
    if cudnn_run is not None:
        impls.append(Impl("cudnn", cudnn_run, calls=calls, work=work))
    res = measure(impls, rounds)
    diff = ""
    if check:
        for key in kernels:
            runner(key)()
        torch.cuda.synchronize()
        worst = max((outs[key].float() - outs["served"].float()).abs().max().item() for key in kernels)
        on_off = max((outs[f"s{s} on"].float() - outs[f"s{s} off"].float()).abs().max().item() for s in STAGES)
        diff = f" | {worst:.2e} | {on_off:.2e}"
    cudnn = res.get("cudnn", {}).get("rate")
    cells = []
    for key in kernels:
        r = res.get(key)
        vs = f"{r['rate'] / cudnn:.3f}x, " if r and cudnn else ""
        cells.append(f"{r['rate'] / 1e12:.0f} ({vs}{r['spread']:.1%})" if r else "-")
    rate = {key: res[key]["rate"] for key in kernels if key in res}
    ratios = [f"{rate[f's{s} on'] / rate[f's{s} off']:.3f}x" for s in STAGES]
    ratios.append(f"{max(rate[f's{s} on'] for s in STAGES) / rate['served']:.3f}x")
    served = kernels_of(dtype, n)["served"][0].name.replace("flash_fwd_wgmma_sm_90a_", "")
    print(f"| {dtype} d{D} causal N{n} | {served} | " + " | ".join(cells)
          + f" | {cudnn / 1e12 if cudnn else float('nan'):.0f} | " + " | ".join(ratios) + f"{diff} |", flush=True)


def _compile(label, cfg, on) -> str:
    return describe(label, cfg, on)


def precompile() -> None:
    jobs = {(cfg, on): label for dtype, n in ROWS for label, (cfg, on) in kernels_of(dtype, n).items()}
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile, jobs.values(), *zip(*jobs)):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    if args.precompile:
        return precompile()
    import torch

    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "TFLOP/s (x cuDNN, spread); 192 x 128 causal tiles, WG_TILES off and on")
    print("| row | served config | served | s2 off | s2 on | s3 off | s3 on | cuDNN | s2 on/off | s3 on/off | "
          "best on/served" + (" | max diff vs served | max on-off" if args.check else "") + " |")
    for dtype, n in ROWS:
        row(dtype, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
