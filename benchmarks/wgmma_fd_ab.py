"""flash_fwd_wgmma's causal trim (WgmmaTemplate.causal_trim, helper FD) at kernel level beside SDPA's cuDNN.

The causal rows still below cuDNN on the H200 (README, sixth session): D 64 at N 1024 / 4096 and D 256 at N 1024
(N 4096 for contrast), bf16 and fp16, B*H*N = 64 x 4096, H = 16 (as `autoflash bench`). For each row it times the
served config and a second tile shape, each with the switch off and on (the same kernel name: built and planned
under the switch), and cuDNN; every kernel is captured in a CUDA graph of --calls launches and replayed in
interleaved rounds (benchmarks/graph_timing.py). The table gives TFLOP/s (causal: visible pairs), x cuDNN, the
spread, and on/off per tile shape.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_fd_ab.py [--rows d64:1024 ...] [--rounds 7] [--check] [--precompile]

--check compares each trimmed kernel's output with the untrimmed one's on the same tiles (max |diff|; the trim
drops only masked columns' work, so 0 is expected); --precompile only compiles every kernel (4 processes).
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

from autoflash import KernelConfig  # noqa: E402
from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402

WG = TEMPLATES["flash_fwd_wgmma"]
TOKENS, HEADS = 64 * 4096, 16
DEVICE = "NVIDIA H200"  # whose tuned entries are timed as "served" (the table names the GPU it ran on)
# a second tile shape per head dim (the first that is not the served one): D 64, three consumers (skips whole tiles)
# or the N 1024 tiles; D 256, 64-key tiles (warpgroup 0 skips a tile on every query tile)
OTHER = {64: [dict(block_m=192, block_n=128, warps=16, stages=2), dict(block_m=128, block_n=128, warps=12, stages=4)],
         256: [dict(block_m=128, block_n=64, warps=12, stages=2)]}


def configs(dtype: str, d: int, n: int) -> list[KernelConfig]:
    """The served config (the H200's tuned entry) and the other tile shape."""
    from autoflash.serve.api import choose_config

    served = choose_config("sm_90", DEVICE, dtype, d, True, n)
    others = [c for c in (served.replace(pingpong=-1, **tiles) for tiles in OTHER[d])
              if c != served and not c.problems()]
    return [served] + others[:1]


def _compile(cfg: KernelConfig, on: bool) -> str:
    with mock.patch.object(WG, "causal_trim", int(on)):
        r = compile_kernel(cfg).report
    return f"{cfg.name} trim={int(on)}: {r.registers} registers, {r.spills} B spilled"


def row(dtype, d, n, rounds, calls, check):
    import torch

    from common import sdpa_runner
    from graph_timing import Impl, measure

    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import launch, plan

    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    p, scale = Problem(b, HEADS, HEADS, n, n, d, True), d ** -0.5
    work = 4.0 * b * HEADS * n * n * d / 2  # causal, as `autoflash bench` counts it
    impls, outs, names = [], {}, {}
    for i, cfg in enumerate(configs(dtype, d, n)):
        for on in (False, True):
            with mock.patch.object(WG, "causal_trim", int(on)):
                kernel = LoadedKernel(compile_kernel(cfg))
                plan(kernel, p, scale)
            key = f"{'served' if i == 0 else 'other'} {'on' if on else 'off'}"
            names[key] = cfg.name.replace("flash_fwd_wgmma_sm_90a_", "")
            outs[key] = torch.empty_like(q)
            ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
            impls.append(Impl(key, (lambda kk=kernel, o=ptrs: launch(kk, *o, p, scale,
                                                                      torch.cuda.current_stream().cuda_stream)),
                              calls=calls, work=work))
    cudnn_run = sdpa_runner("sdpa_cudnn", q, k, v, True)
    if cudnn_run is not None:
        impls.append(Impl("cudnn", cudnn_run, calls=calls, work=work))
    res = measure(impls, rounds)
    cudnn = res.get("cudnn", {}).get("rate")
    for shape in ("served", "other"):
        off, on = res.get(f"{shape} off", {}), res.get(f"{shape} on", {})
        if off.get("rate") is None or on.get("rate") is None:
            if f"{shape} off" in names:
                print(f"| {dtype} d{d} N{n} | {shape} {names[f'{shape} off']} | n/a: {off.get('na')} {on.get('na')} |")
            continue
        diff = ""
        if check:
            for key in (f"{shape} off", f"{shape} on"):
                impls[[i.name for i in impls].index(key)].kernel()
            torch.cuda.synchronize()
            diff = f" | {(outs[f'{shape} on'].float() - outs[f'{shape} off'].float()).abs().max().item():.2e}"
        cells = [f"{r['rate'] / 1e12:.0f} ({r['rate'] / cudnn:.3f}x, {r['spread']:.1%})" if cudnn else
                 f"{r['rate'] / 1e12:.0f} ({r['spread']:.1%})" for r in (off, on)]
        print(f"| {dtype} d{d} N{n} | {shape} {names[f'{shape} off']} | {cells[0]} | {cells[1]} | "
              f"{cudnn / 1e12 if cudnn else float('nan'):.0f} | {on['rate'] / off['rate']:.3f}x{diff} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=["d64:1024", "d64:4096", "d256:1024", "d256:4096"])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = [(int(r.split(":")[0][1:]), int(r.split(":")[1])) for r in args.rows]
    if args.precompile:
        jobs = sorted({(cfg, on) for d, n in rows for dt in args.dtypes for cfg in configs(dt, d, n)
                       for on in (False, True)}, key=lambda j: (j[0].name, j[1]))
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, *zip(*jobs)):
                print(line, flush=True)
        return
    import torch

    print(f"{torch.cuda.get_device_name()}; causal, B*H*N = {TOKENS}, H {HEADS}; graphs of {args.calls} launches, "
          f"{args.rounds} interleaved rounds; TFLOP/s (x cuDNN, spread)")
    print("| row | tiles | trim off | trim on | cuDNN | on/off" + (" | max diff" if args.check else "") + " |")
    for d, n in rows:
        for dtype in args.dtypes:
            row(dtype, d, n, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
