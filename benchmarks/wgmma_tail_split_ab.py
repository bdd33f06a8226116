"""flash_fwd_wgmma with ops/forward_wgmma.TAIL_SPLIT (causal dense launches run the last, partial round's pairs as
single query tiles, heaviest first, dealt to the CTAs in a snake) against the same served config with the switch off,
at kernel level beside SDPA's cuDNN, in one run.

Rows: causal, B*H*N = 262144 tokens (H = 16: N 1024 is 16 x 16 heads x 4 pairs = 1024 items, 7.76 rounds of 132
CTAs), the config attention() serves for the row. Columns: "off" (today), "on", "off2" (the off kernel again: an A/A
control) and cuDNN; every kernel is captured in a CUDA graph of --calls launches and replayed in interleaved rounds
(benchmarks/graph_timing.py): TFLOP/s (median over rounds), on/off, on/cuDNN, off/cuDNN, spreads (range of the round
medians / median). "same" says whether on's O equals off's bitwise (it must: each tile's result does not depend on
which CTA runs it). The float64 checks: tests/test_wgmma_tail_split_gpu.py.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_tail_split_ab.py [--rows ...] [--rounds 9] [--precompile]

--precompile only compiles every kernel a run would time (8 processes, into the disk cache) and exits.
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

TOKENS, HEADS = 262144, 16
ROWS = ["bf16:64:1024", "fp16:64:1024", "bf16:128:1024", "bf16:256:1024",
        "bf16:64:4096", "fp16:64:4096", "bf16:128:4096", "bf16:256:4096"]


@contextlib.contextmanager
def tail_split(on: bool):
    """TAIL_SPLIT set while a kernel is rendered and compiled (the launch does not read it)."""
    saved, forward_wgmma.TAIL_SPLIT = forward_wgmma.TAIL_SPLIT, on
    try:
        yield
    finally:
        forward_wgmma.TAIL_SPLIT = saved


def served(dtype: str, d: int, n: int):
    arch, name = device_arch(0)
    cfg = choose_config(arch, name, dtype, d, True, n)
    if cfg.template != forward_wgmma.WGMMA.name:
        raise SystemExit(f"{dtype} D {d} N {n}: attention() serves {cfg.name}, not flash_fwd_wgmma")
    return cfg


def compiled(cfg, on: bool):
    with tail_split(on):
        return compile_kernel(cfg)


def row(spec: str, rounds: int, calls: int) -> None:
    dtype, d, n = spec.split(":")[0], int(spec.split(":")[1]), int(spec.split(":")[2])
    b = TOKENS // (n * HEADS)
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    p, scale = Problem(b, HEADS, HEADS, n, n, d, True), d ** -0.5
    cfg = served(dtype, d, n)
    kernels = {"off": LoadedKernel(compiled(cfg, False)), "on": LoadedKernel(compiled(cfg, True))}
    kernels["off2"] = kernels["off"]
    for kernel in kernels.values():
        plan(kernel, p, scale)
    outs = {key: torch.empty_like(q) for key in kernels}

    def runner(key):
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
        return lambda: launch(kernels[key], *ptrs, p, scale, torch.cuda.current_stream().cuda_stream)

    work = 4.0 * b * HEADS * n * n * d / 2
    impls = [Impl(key, runner(key), calls=calls, work=work) for key in kernels]
    cudnn_run = sdpa_runner("sdpa_cudnn", q, k, v, True)
    if cudnn_run is not None:
        impls.append(Impl("cudnn", cudnn_run, calls=calls, work=work))
    res = measure(impls, rounds)
    for key in ("off", "on"):
        runner(key)()
    torch.cuda.synchronize()
    same = "yes" if torch.equal(outs["on"].view(torch.int16), outs["off"].view(torch.int16)) else "NO"
    rate = {key: r.get("rate") for key, r in res.items()}
    spread = {key: r.get("spread") for key, r in res.items()}
    wg = forward_wgmma.WGMMA
    items, grid = wg.items(cfg, p), plan(kernels["on"], p, scale).grid[0]

    def ratio(a, c):
        return f"{rate[a] / rate[c]:.3f}x" if rate.get(a) and rate.get(c) else "n/a"

    cells = [f"{rate[x] / 1e12:.0f}" if rate.get(x) else "n/a" for x in ("off", "on", "off2", "cudnn")]
    spreads = " / ".join(f"{100 * spread[x]:.1f}%" if spread.get(x) is not None else "n/a"
                         for x in ("off", "on", "off2", "cudnn"))
    print(f"| {dtype} d{d} N{n} B{b} | {cfg.name.replace('flash_fwd_wgmma_sm_90a_', '')} | {items} / {grid} = "
          f"{items / grid:.2f} | " + " | ".join(cells) + f" | {ratio('on', 'off')} | {ratio('off2', 'off')} | "
          f"{ratio('on', 'cudnn')} | {ratio('off', 'cudnn')} | {spreads} | {same} |", flush=True)


def _compile(cfg, on: bool) -> str:
    r = compiled(cfg, on).report
    return (f"{'on ' if on else 'off'} {cfg.name}: {r.registers} registers, {r.spills} B spilled, "
            f"{r.stack_frame} B stack, serialised={r.wgmma_serialized}")


def precompile(rows) -> None:
    jobs = []
    for spec in rows:
        dtype, d, n = spec.split(":")
        cfg = served(dtype, int(d), int(n))
        jobs += [(cfg, False), (cfg, True)]
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile, *zip(*jobs)):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=ROWS, help="dtype:head_dim:N, causal")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    if args.precompile:
        return precompile(args.rows)
    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "causal, TFLOP/s")
    print("| row | served config | items / CTAs | off | on | off2 | cuDNN | on/off | off2/off (A/A) | on/cuDNN | "
          "off/cuDNN | spread off / on / off2 / cuDNN | on == off |")
    print("|" + "---|" * 14)
    for spec in args.rows:
        row(spec, args.rounds, args.calls)


if __name__ == "__main__":
    main()
