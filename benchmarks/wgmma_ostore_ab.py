"""flash_fwd_wgmma's O store, registers vs TMA (KernelConfig.o_store), at kernel level beside SDPA's cuDNN.

For each row (fp16/bf16 x D 64/128/256 x causal, N 1024 by default, B*H*N = 64 x 4096, H = 16, as
bench_attention.py) it times: "served", the config attention() picks with the register store; "tma", that config
with the TMA store if its tiles leave room for O's staging tile, else the config with one stage fewer (or, D 256,
one consumer warpgroup: block_m 64); "regs-same", that same config with the register store (so the store alone is
compared); and cuDNN. (Each store is spelled as the checks want: o_store -1 where it is the rule.) Every kernel is captured in a CUDA graph of --calls launches and replayed in interleaved
rounds (benchmarks/graph_timing.py); the table gives TFLOP/s (median over rounds), ratios and the spread.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_ostore_ab.py [--seq-lens 1024] [--rounds 7] [--check] [--precompile]

--check also compares each "tma" kernel's output with the served kernel's (max |diff|, bf16/fp16 noise);
--precompile only compiles every kernel a run would time (8 processes, into the disk cache) and exits.
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

from common import sdpa_runner, tflops  # noqa: E402
from graph_timing import Impl, measure  # noqa: E402

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.kernels.loaded import LoadedKernel  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402
from autoflash.ops.forward_launch import launch, plan  # noqa: E402
from autoflash.serve.api import choose_config  # noqa: E402

WG = TEMPLATES["flash_fwd_wgmma"]
TOKENS, HEADS = 64 * 4096, 16


def with_store(cfg, store: str):
    """cfg with O stored from "registers" or by "tma", o_store spelled -1 where that is the rule."""
    rule = "tma" if WG.o_store_rule(cfg) else "registers"
    return cfg.replace(o_store=-1 if store == rule else int(store == "tma"))


def loaded(cfg, store: str, p: Problem, scale: float) -> LoadedKernel:
    """cfg with that store, compiled, loaded and planned for p."""
    cfg = with_store(cfg, store)
    kernel = LoadedKernel(compile_kernel(cfg))
    plan(kernel, p, scale)
    r = kernel.compiled.report
    print(f"  {store:>9} {cfg.name}: {r.registers} registers, {r.spills} B spilled, {kernel.smem} B smem",
          flush=True)
    return kernel


def fitting(cfg):
    """cfg, or the nearest config whose tiles leave room for O's staging tile (fewer stages, then block_m 64)."""
    fewer_stages = [cfg.replace(stages=s) for s in range(cfg.stages - 1, 1, -1)]
    one_consumer = [cfg.replace(block_m=64, warps=8, stages=s, pingpong=-1) for s in (2, 3)]
    for c in [cfg] + fewer_stages + one_consumer:
        if not with_store(c, "tma").problems():
            return c
    return None


def row(dtype, d, causal, n, rounds, calls, check):
    arch, name = device_arch(0)
    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    p, scale = Problem(b, HEADS, HEADS, n, n, d, causal), d ** -0.5
    served = with_store(choose_config(arch, name, dtype, d, causal, n), "registers")
    same = fitting(served)
    kernels = {"served": loaded(served, "registers", p, scale)}
    if same is not None:
        kernels["tma"] = loaded(same, "tma", p, scale)
        if same != served:
            kernels["regs-same"] = loaded(same, "registers", p, scale)
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
    if check and "tma" in kernels:
        for key in kernels:
            runner(key)()
        torch.cuda.synchronize()
        diff = f" | {(outs['tma'].float() - outs['served'].float()).abs().max().item():.2e}"
    cudnn = res.get("cudnn", {}).get("rate")
    cells = []
    for key in ("served", "tma", "regs-same"):
        r = res.get(key, {})
        if r.get("rate") is None:
            cells.append("-")
        else:
            vs = f"{r['rate'] / cudnn:.3f}x, " if cudnn else ""
            cells.append(f"{r['rate'] / 1e12:.0f} ({vs}{r['spread']:.1%})")
    tma_vs = (res["tma"]["rate"] / res["served"]["rate"]) if "tma" in res and res["tma"].get("rate") else None
    short = served.name.replace("flash_fwd_wgmma_sm_90a_", "")
    label = same.name.replace("flash_fwd_wgmma_sm_90a_", "") if same is not None else "no fitting tiles"
    ratio = "-" if tma_vs is None else f"{tma_vs:.3f}x"
    print(f"| {dtype} d{d} {'causal' if causal else 'full'} N{n} | {short} | {label} | " + " | ".join(cells)
          + f" | {cudnn / 1e12 if cudnn else float('nan'):.0f} | {ratio}{diff} |", flush=True)


def _compile(cfg, store: str) -> str:
    cfg = with_store(cfg, store)
    r = compile_kernel(cfg).report
    return f"{store:>9} {cfg.name}: {r.registers} registers, {r.spills} B spilled"


def precompile(args) -> None:
    arch, name = device_arch(0)
    jobs = set()
    for n in args.seq_lens:
        for dtype in args.dtypes:
            for d in args.head_dims:
                for causal in (False, True):
                    served = with_store(choose_config(arch, name, dtype, d, causal, n), "registers")
                    same = fitting(served)
                    jobs.add((served, "registers"))
                    if same is not None:
                        jobs |= {(same, "tma"), (same, "registers")}
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        for line in pool.map(_compile, *zip(*sorted(jobs, key=lambda j: (j[0].name, j[1])))):
            print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-lens", nargs="+", type=int, default=[1024])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--head-dims", nargs="+", type=int, default=[64, 128, 256])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    if args.precompile:
        return precompile(args)
    print(f"{torch.cuda.get_device_name()}; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "TFLOP/s (x cuDNN, spread)")
    print("| row | served config | TMA-store config | served (registers) | tma | regs, TMA's tiles | cuDNN | "
          "tma/served" + (" | max diff" if args.check else "") + " |")
    for n in args.seq_lens:
        for dtype in args.dtypes:
            for d in args.head_dims:
                for causal in (False, True):
                    row(dtype, d, causal, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
