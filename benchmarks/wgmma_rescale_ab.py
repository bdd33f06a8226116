"""flash_fwd_wgmma's rescale skip (WgmmaTemplate.rescale_skip, helper RS after helper SA's census) at kernel level
beside SDPA's cuDNN.

Rows: the served plain config (the H200's tuned entry), bf16, D 64 / 128 / 256, causal or not, N 4096 and 1024,
B*H*N = 64 x 4096, H = 16 (as `autoflash bench`), with the switch off and on (the same kernel name: built and planned
under the switch), and cuDNN; every kernel is captured in a CUDA graph of --calls launches and replayed in
interleaved rounds (benchmarks/graph_timing.py). The table gives TFLOP/s (causal: visible pairs), x cuDNN, the
spread, and on/off on random data and on "sink" inputs (key 0 every row's max: nearly every later tile skips).
Prediction (census fit on the skip path: D 128 +3.3 % / causal +4.5 %, D 64 +3.4 %, D 256 causal +8.4 % when every
tile skips; random data skips a tile only when none of a warp's 16 rows finds a new max, ~(j / (j + 1))^16 at key
tile j: 22 % of D 128 bc192's tiles at N 4096, 4 % at N 1024), so random rows +0-1 % (N 1024 ~-0.3 %: the vote on
the rescale path), sink rows near the census figures.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_rescale_ab.py [--rows d128:4096:nc ...] [--rounds 7] [--check]
    PYTHONPATH=$PWD python3 benchmarks/wgmma_rescale_ab.py --precompile

--check compares the two kernels' outputs on the same inputs: bitwise equal is expected (a skipped rescale multiplies
by exactly 1); --precompile only compiles every kernel (4 processes).
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
ROWS = [f"d{d}:{n}:{c}" for n in (4096, 1024) for d in (128, 64, 256) for c in ("nc", "c")]


def served(dtype: str, d: int, n: int, causal: bool) -> KernelConfig:
    from autoflash.serve.api import choose_config

    return choose_config("sm_90", DEVICE, dtype, d, causal, n)


def _compile(cfg: KernelConfig, on: bool) -> str:
    with mock.patch.object(WG, "rescale_skip", int(on)):
        r = compile_kernel(cfg).report
    return f"{cfg.name} rescale_skip={int(on)}: {r.registers} registers, {r.spills} B spilled"


def row(dtype, d, n, causal, rounds, calls, check):
    import torch

    from common import sdpa_runner
    from graph_timing import Impl, measure

    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import launch, plan

    b = max(1, TOKENS // (n * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, HEADS, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    p, scale = Problem(b, HEADS, HEADS, n, n, d, causal), d ** -0.5
    work = 4.0 * b * HEADS * n * n * d / (2 if causal else 1)  # visible pairs, as `autoflash bench` counts them
    cfg = served(dtype, d, n, causal)
    # "sink" inputs: column 0 of q is 8 and of k 0 but for key 0 (16): every row's max is key 0 (+16 d^-0.5 x 8
    # >= 8 nats above its other scores' ~3.6), so (nearly) no max moves past the first tile
    qs, ks = q.clone(), k.clone()
    qs[..., 0], ks[..., 0] = 8, 0
    ks[:, :, 0, 0] = 16
    impls, outs = [], {}
    for on in (False, True):
        with mock.patch.object(WG, "rescale_skip", int(on)):
            kernel = LoadedKernel(compile_kernel(cfg))
            plan(kernel, p, scale)  # the plan keeps the switched kernel's arguments
        for data, (qq, kk_) in (("", (q, k)), (" sink", (qs, ks))):
            key = ("on" if on else "off") + data
            outs[key] = torch.empty_like(q)
            ptrs = (qq.data_ptr(), kk_.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
            impls.append(Impl(key, (lambda kk=kernel, o=ptrs: launch(kk, *o, p, scale,
                                                                      torch.cuda.current_stream().cuda_stream)),
                              calls=calls, work=work))
    cudnn_run = sdpa_runner("sdpa_cudnn", q, k, v, causal)
    if cudnn_run is not None:
        impls.append(Impl("cudnn", cudnn_run, calls=calls, work=work))
    res = measure(impls, rounds)
    name = f"{dtype} d{d} N{n} {'causal' if causal else 'non-causal'}"
    tiles = cfg.name.replace("flash_fwd_wgmma_sm_90a_", "")
    off, on, cudnn = res["off"], res["on"], res.get("cudnn", {}).get("rate")
    if off.get("rate") is None or on.get("rate") is None:
        print(f"| {name} | {tiles} | n/a: {off.get('na')} {on.get('na')} |", flush=True)
        return
    sink = (f"{res['on sink']['rate'] / res['off sink']['rate']:.3f}x" if res["on sink"].get("rate")
            and res["off sink"].get("rate") else "n/a")
    diff = ""
    if check:
        for impl in impls[:4]:
            impl.kernel()
        torch.cuda.synchronize()
        same = [torch.equal(outs["on" + x].view(torch.int16), outs["off" + x].view(torch.int16)) for x in ("", " sink")]
        diff = f" | {' / '.join('bitwise equal' if x else 'DIFFER' for x in same)}"
    cells = [f"{r['rate'] / 1e12:.0f} ({r['rate'] / cudnn:.3f}x, {r['spread']:.1%})" if cudnn else
             f"{r['rate'] / 1e12:.0f} ({r['spread']:.1%})" for r in (off, on)]
    print(f"| {name} | {tiles} | {cells[0]} | {cells[1]} | {cudnn / 1e12 if cudnn else float('nan'):.0f} | "
          f"{on['rate'] / off['rate']:.3f}x | {sink}{diff} |", flush=True)


def parse_rows(texts) -> list[tuple[int, int, bool]]:
    rows = []
    for text in texts:
        d, n, c = text.split(":")
        if not d.startswith("d") or c not in ("c", "nc"):
            raise SystemExit(f"rows are dD:N:c or dD:N:nc (causal or not), got {text!r}")
        rows.append((int(d[1:]), int(n), c == "c"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=ROWS)
    ap.add_argument("--dtypes", nargs="+", default=["bf16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = parse_rows(args.rows)
    if args.precompile:
        jobs = sorted({(served(dt, d, n, c), on) for d, n, c in rows for dt in args.dtypes for on in (False, True)},
                      key=lambda j: (j[0].name, j[1]))
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, *zip(*jobs)):
                print(line, flush=True)
        return
    import torch

    print(f"{torch.cuda.get_device_name()}; served plain tiles, B*H*N = {TOKENS}, H {HEADS}; graphs of {args.calls} "
          f"launches, {args.rounds} interleaved rounds; TFLOP/s (x cuDNN, spread)")
    print("| row | tiles | skip off | skip on | cuDNN | on/off | on/off, sink inputs"
          + (" | on vs off (random / sink)" if args.check else "") + " |")
    for d, n, causal in rows:
        for dtype in args.dtypes:
            row(dtype, d, n, causal, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
