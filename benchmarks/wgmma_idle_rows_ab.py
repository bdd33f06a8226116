"""flash_fwd_wgmma's IDLE_ROWS_SKIP (forward_wgmma, on: a consumer warpgroup whose 64 rows are all past the sequence
skips its wgmmas, softmax and store; `grid` spreads such tiles with one SM fewer where a grid of every SM would give
them all to the same CTAs) against the kernel before it (switch off, every SM) at kernel level, beside SDPA's cuDNN.
Issue 18: bf16/fp16 D 64 N 1024 non-causal ran 0.99x cuDNN on 192-row tiles (1024 = 5 x 192 + 64: the sixth tile's
warpgroups 1 and 2 computed rows past the sequence, 1152 rows computed for 1024).

Rows (B*H*N = 64 x 4096, H = 16): bf16/fp16 D 64 N 1024 and N 4096, bf16 D 128 / D 256 N 1024, causal and not. Per
row: "before" (attention()'s config for the row compiled and planned with the switch off), "served" (switch on, the
grid rule), "served2" (the served kernel again in a second graph: the A/A control, the noise floor) and cuDNN. Each is a
CUDA graph of --calls launches replayed in --rounds interleaved rounds (benchmarks/graph_timing.py); the table gives
TFLOP/s (median over rounds; causal counts half the work), x cuDNN, the spread, served/before and served2/served, the
grid, and the rows the config computed per row stored before the switch. (The eleventh session's first A/B of this
switch also timed a rotated walk, `IDLE_ROWS_SKIP = 2`, since removed: wgmma_idle_rows_ab_h200_2026-11-30_s11.log.)

    PYTHONPATH=$PWD python3 benchmarks/wgmma_idle_rows_ab.py [--rows d64 ...] [--rounds 7] [--check] [--precompile]

--check also gives max |x - before| over the row's kernels x (the idle warpgroups' rows are never stored and each
row is computed by one CTA in the same order, so 0 is expected); the float64 checks are
tests/test_wgmma_idle_rows_gpu.py. --precompile compiles every kernel a run would time (8 processes, disk cache).
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.ops import forward_wgmma  # noqa: E402
from autoflash.serve.api import choose_config  # noqa: E402

WG = forward_wgmma.WGMMA
LABEL = {False: "before", True: "served"}  # IDLE_ROWS_SKIP's values
# (dtype, head dim, seq len); each causal and not
ROWS = {"d64": [(t, 64, n) for n in (1024, 4096) for t in ("bf16", "fp16")], "d128": [("bf16", 128, 1024)],
        "d256": [("bf16", 256, 1024)]}


class switch:
    """IDLE_ROWS_SKIP set to `on` inside the block (it changes the source and, through `grid`, the launch)."""
    def __init__(self, on):
        self.on = on

    def __enter__(self):
        self.old, forward_wgmma.IDLE_ROWS_SKIP = forward_wgmma.IDLE_ROWS_SKIP, self.on

    def __exit__(self, *exc):
        forward_wgmma.IDLE_ROWS_SKIP = self.old


def compiled(cfg, switched):
    with switch(switched):
        return compile_kernel(cfg)


def loaded(cfg, switched):
    from autoflash.kernels.loaded import LoadedKernel

    kernel = LoadedKernel(compiled(cfg, switched))
    r = kernel.compiled.report
    print(f"  {LABEL[switched]} {cfg.name}: {r.registers} registers, {r.spills} B spilled, "
          f"stack {r.stack_frame} B, serialised {r.wgmma_serialized}", flush=True)
    return kernel


def computed_per_stored(cfg, n: int) -> float:
    """Query rows the kernel computes per row of the sequence: with the switch, whole 64-row warpgroups."""
    return math.ceil(n / cfg.block_m) * cfg.block_m / n


def row(dtype, d, causal, n, rounds, calls, check):
    from forward_ab import cells, inputs, time_beside_cudnn
    from autoflash.ops.forward_launch import plan

    arch, name = device_arch(0)
    q, k, v, p, scale = inputs(dtype, d, causal, n)
    cfg = choose_config(arch, name, dtype, d, causal, n)
    kernels, grids = {}, {}
    for key, on in (("before", False), ("served", True)):
        kernels[key] = loaded(cfg, on)
        with switch(on):
            plan(kernels[key], p, scale)
            grids[key] = WG.grid(cfg, p)[0]
    kernels["served2"] = kernels["served"]
    res, outs = time_beside_cudnn(kernels, q, k, v, p, scale, rounds, calls)
    diff = ""
    if check:
        worst = max((outs[key].float() - outs["before"].float()).abs().max().item() for key in kernels)
        diff = f" | {worst:.2e}"
    cudnn = res.get("cudnn", {}).get("rate")
    ratios = [f"{res['served']['rate'] / res['before']['rate']:.3f}x",
              f"{res['served2']['rate'] / res['served']['rate']:.3f}x"]
    short = cfg.name.replace("flash_fwd_wgmma_sm_90a_", "")
    print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {short} | {computed_per_stored(cfg, n):.3f} | "
          f"{grids['before']} / {grids['served']} | " + " | ".join(cells(res, ("before", "served", "served2")))
          + f" | {cudnn / 1e12 if cudnn else float('nan'):.0f} | " + " | ".join(ratios) + f"{diff} |", flush=True)


def served_configs(rows) -> list:
    arch, name = device_arch(0)
    return sorted({choose_config(arch, name, t, d, c, n) for t, d, n in rows for c in (False, True)},
                  key=lambda c: c.name)


def _compile(cfg, switched) -> str:
    r = compiled(cfg, switched).report
    return (f"{LABEL[switched]} {cfg.name}: {r.registers} registers, {r.spills} B spilled, "
            f"stack {r.stack_frame} B, serialised {r.wgmma_serialized}")


def precompile(rows) -> None:
    jobs = [(c, s) for c in served_configs(rows) for s in (False, True)]
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile, *zip(*jobs)):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = [r for key in args.rows for r in ROWS[key]]
    if args.precompile:
        return precompile(rows)
    import torch

    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "TFLOP/s (x cuDNN, spread); computed/stored: query rows computed per row stored with the switch off")
    print("| row | served config | computed/stored | grid before / served | before | served | served2 (A/A) | cuDNN | "
          "served/before | served2/served"
          + (" | max diff" if args.check else "") + " |")
    for dtype, d, n in rows:
        for causal in (False, True):
            row(dtype, d, causal, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
