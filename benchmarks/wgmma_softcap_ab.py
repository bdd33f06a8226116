"""flash_fwd_wgmma's switches softcap_rcp and alibi_columns (helper SC) at kernel level.

Rows: bf16, N 4096, B*H*N = 64 x 4096, H 16 (as `autoflash bench`), D 128 and 64:
- softcap (non-causal, softcap 30): the served softcap config with softcap_rcp off and on;
- alibi (causal, the usual slopes 2^(-8 (h + 1) / H)): the served ALiBi config with alibi_columns off and on, and off
  with every slope 0 ("off, slope 0": the same loop, no bias; helper SA's probe of the ~6 % the census leaves
  unexplained at D 128).
Each row also times the served plain config of the same causality, so every rate is a ratio to plain per visible
pair (helper SA's census predicted softcap off 0.61x / 0.50x -> on 0.72-0.78x / 0.58-0.62x at D 128 / 64, ALiBi
0.87x -> ~0.89x at D 128). The same kernel name is built and planned under the switch. Every kernel is captured in a
CUDA graph of --calls launches and replayed in interleaved rounds (benchmarks/graph_timing.py): median TFLOP/s and
spread over the rounds.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_softcap_ab.py [--rows softcap:d128 alibi:d64 ...] [--rounds 7] [--check]
    PYTHONPATH=$PWD python3 benchmarks/wgmma_softcap_ab.py --precompile

--check compares the switched kernel's output with the unswitched one's on the same inputs (max |diff|, and relative
to max |O|: a bf16 rounding is expected, the two forms differ by float32 rounding); --precompile only compiles every
kernel (4 processes).
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
from autoflash.kernels.registry import TEMPLATES  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402

WG = TEMPLATES["flash_fwd_wgmma"]
TOKENS, HEADS, N, CAP = 64 * 4096, 16, 4096, 30.0
DEVICE = "NVIDIA H200"  # whose tuned entries are timed as "served" (the table names the GPU it ran on)
VARIANTS = {"softcap": ("softcap_rcp", False), "alibi": ("alibi_columns", True)}  # variant: (switch, causal)


def configs(variant: str, dtype: str, d: int) -> dict:
    """The served configs of the variant and of plain attention, same causality."""
    from autoflash.serve.api import choose_config

    causal = VARIANTS[variant][1]
    return {name: choose_config("sm_90", DEVICE, dtype, d, causal, N, {variant: name == variant})
            for name in (variant, "plain")}


def _compile(cfg, name: str, on: bool) -> str:
    with mock.patch.object(WG, name, int(on)):
        r = compile_kernel(cfg).report
    return f"{cfg.name} {name}={int(on)}: {r.registers} registers, {r.spills} B spilled"


def row(variant, dtype, d, rounds, calls, check):
    import torch

    from graph_timing import Impl, measure

    from autoflash.kernels.loaded import LoadedKernel
    from autoflash.ops.forward_launch import alibi_slopes, launch, plan

    name, causal = VARIANTS[variant]
    b = max(1, TOKENS // (N * HEADS))
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(N + d)
    q, k, v = (torch.randn(b, HEADS, N, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    slopes = torch.from_numpy(alibi_slopes(HEADS)).cuda()
    zeros = torch.zeros_like(slopes)
    scale = d ** -0.5
    work = 4.0 * b * HEADS * N * N * d / (2 if causal else 1)  # visible pairs, as `autoflash bench` counts them
    cfgs = configs(variant, dtype, d)
    runs = [("off", cfgs[variant], False, slopes), ("on", cfgs[variant], True, slopes),
            ("plain", cfgs["plain"], False, None)]
    if variant == "alibi":
        runs.append(("off, slope 0", cfgs[variant], False, zeros))
    impls, outs = [], {}
    for key, cfg, on, slope_arr in runs:
        p = Problem(b, HEADS, HEADS, N, N, d, causal, softcap=CAP if cfg.softcap else 0.0,
                    alibi_slopes=slope_arr.data_ptr() if cfg.alibi else 0)
        with mock.patch.object(WG, name, int(on)):
            kernel = LoadedKernel(compile_kernel(cfg))
            plan(kernel, p, scale)  # the plan keeps the switched kernel's arguments
        outs[key] = torch.empty_like(q)
        ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), outs[key].data_ptr(), 0)
        impls.append(Impl(key, (lambda kk=kernel, o=ptrs, pp=p: launch(kk, *o, pp, scale,
                                                                         torch.cuda.current_stream().cuda_stream)),
                          calls=calls, work=work))
    res = measure(impls, rounds)
    tiles = cfgs[variant].name.replace("flash_fwd_wgmma_sm_90a_", "")
    if any(r.get("rate") is None for r in res.values()):
        print(f"| {variant} {dtype} d{d} | {tiles} | n/a: {[r.get('na') for r in res.values()]} |")
        return
    diff = ""
    if check:
        for impl in impls[:2]:
            impl.kernel()
        torch.cuda.synchronize()
        delta = (outs["on"].float() - outs["off"].float()).abs().max().item()
        diff = f" | {delta:.2e} ({delta / max(outs['off'].float().abs().max().item(), 1e-30):.1e} of max)"
    plain = res["plain"]["rate"]
    cells = [f"{res[x]['rate'] / 1e12:.0f} ({res[x]['rate'] / plain:.3f}x, {res[x]['spread']:.1%})"
             for x in ("off", "on")]
    zero = (f" | {res['off, slope 0']['rate'] / 1e12:.0f} ({res['off, slope 0']['rate'] / plain:.3f}x)"
            if "off, slope 0" in res else " | -")
    print(f"| {variant} {dtype} d{d} | {tiles} | {cells[0]} | {cells[1]} | {plain / 1e12:.0f} "
          f"({res['plain']['spread']:.1%}) | {res['on']['rate'] / res['off']['rate']:.3f}x{zero}{diff} |", flush=True)


def parse_rows(texts) -> list[tuple[str, int]]:
    rows = [(text.split(":")[0], int(text.split(":")[1][1:])) for text in texts]
    bad = [r for r in rows if r[0] not in VARIANTS]
    if bad:
        raise SystemExit(f"rows are VARIANT:dD with VARIANT in {sorted(VARIANTS)}, got {bad}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=["softcap:d128", "softcap:d64", "alibi:d128", "alibi:d64"])
    ap.add_argument("--dtypes", nargs="+", default=["bf16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=10, help="launches per CUDA graph")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--precompile", action="store_true")
    args = ap.parse_args()
    rows = parse_rows(args.rows)
    if args.precompile:
        jobs = sorted({(cfg, VARIANTS[var][0], on and cfg.name == cfgs[var].name)
                       for var, d in rows for dt in args.dtypes for cfgs in [configs(var, dt, d)]
                       for cfg in cfgs.values() for on in (False, True)}, key=lambda j: (j[0].name, j[1], j[2]))
        with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
            for line in pool.map(_compile, *zip(*jobs)):
                print(line, flush=True)
        return
    import torch

    print(f"{torch.cuda.get_device_name()}; N {N}, B*H*N = {TOKENS}, H {HEADS}; softcap rows non-causal, cap {CAP}; "
          f"alibi rows causal, usual slopes; graphs of {args.calls} launches, {args.rounds} interleaved rounds; "
          "TFLOP/s of visible pairs (x served plain, spread)")
    print("| row | variant tiles | switch off | switch on | plain | on/off | off, slope 0"
          + (" | max diff" if args.check else "") + " |")
    for variant, d in rows:
        for dtype in args.dtypes:
            row(variant, dtype, d, args.rounds, args.calls, args.check)


if __name__ == "__main__":
    main()
