"""flash_fwd_wgmma A/B at kernel level against SDPA's cuDNN backend, and an ncu target.

    PYTHONPATH=$PWD python3 benchmarks/wgmma_ab.py --time [--rounds 7] [--variants base,new]
    PYTHONPATH=$PWD python3 benchmarks/wgmma_ab.py --check
    ncu --profile-from-start off ... python3 benchmarks/wgmma_ab.py --profile

A "variant" is the tuned config of a row rendered with some template values overridden
(the schedule switches that are not KernelConfig fields), so two versions of the template
run side by side in one process. Timing: each kernel (and cuDNN) is captured in a CUDA
graph of GRAPH_LAUNCHES launches (host work gone); every round replays all graphs in a
rotated order, median of REPS replays each; the table reports the median over rounds and
the spread (max-min over rounds / median) per column. Shape: B*H*N = 64*4096, H = 16.
--profile runs each kernel once between cudaProfilerStart/Stop after a warm-up.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("AUTOFLASH_CACHE_DIR", "/tmp/autoflash-cache")

import torch  # noqa: E402

from common import sdpa_runner, tflops  # noqa: E402

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash import KernelConfig  # noqa: E402
from autoflash.kernels.loaded import LoadedKernel  # noqa: E402
from autoflash.ops.forward_launch import launch as launch_kernel  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402
from autoflash.kernels.render import environment  # noqa: E402
from autoflash.kernels.registry import TEMPLATES as VARIANTS  # noqa: E402

WG = VARIANTS["flash_fwd_wgmma"]

# Variants: name -> template values to override (empty: the committed schedule). To A/B a change,
# put it in the template behind a new template value and add e.g. "new": {"that_value": 1} here.
# (2026-11-25: "early"/"late" compared the rescale_early switch of NOTES.md v5; "acc1"/"acc4" the softmax_acc
# switch and "emu0"/"emu8"/"emu4" the exp2_emu switch of NOTES.md v6; all three switches were reverted.)
VARIANT_VALUES = {
    "base": {},
    "pp0": {"pingpong": 0},
    "pp1": {"pingpong": 1},
}
GRAPH_LAUNCHES = 5
REPS = 10


def cfg(dtype, d, causal, bm, bn, st):
    return KernelConfig("flash_fwd_wgmma", "sm_90a", dtype, d, causal, bm, bn, 4 * (bm // 64 + 1), st)


# The rows that matter, each with its tuned config (tuned_configs/sm_90.json, H100, N4096 bucket).
def rows(which):
    out = []
    for dtype in ("bf16", "fp16"):
        out.append((dtype, 128, 4096, False, cfg(dtype, 128, False, 128, 128, 3)))
        out.append((dtype, 128, 4096, True, cfg(dtype, 128, True, 128, 160, 2)))
    if which == "weak":  # the H200 rows furthest behind cuDNN (eighth session), their served tiles
        return [("bf16", 64, 1024, True, cfg("bf16", 64, True, 128, 128, 4)),
                ("bf16", 64, 4096, True, cfg("bf16", 64, True, 192, 128, 2)),
                ("bf16", 256, 1024, True, cfg("bf16", 256, True, 128, 80, 2))]
    if which == "more":
        out.append(("bf16", 128, 16384, False, cfg("bf16", 128, False, 128, 160, 2)))
        out.append(("bf16", 128, 16384, True, cfg("bf16", 128, True, 128, 160, 2)))
        out.append(("bf16", 128, 1024, True, cfg("bf16", 128, True, 128, 128, 3)))
    return out


_LOADED = {}


def load(c: KernelConfig, variant: str) -> LoadedKernel:
    key = (c, variant)
    if key not in _LOADED:
        values = {**WG.values(c), **VARIANT_VALUES[variant]}
        src = environment().get_template(WG.template_file).render(**values)
        compiled = compile_kernel(c, source=src, use_cache=False)
        r = compiled.report
        print(f"  {variant:>5} {c.name}: {r.registers} regs, {r.spills} B spilled", flush=True)
        _LOADED[key] = LoadedKernel(compiled)
    return _LOADED[key]


def inputs(dtype, d, n):
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    h = 16
    b = max(1, 64 * 4096 // (h * n))
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v = (torch.randn(b, h, n, d, device="cuda", generator=g).to(tdt) for _ in range(3))
    return b, h, q, k, v


def our_fn(kernel, q, k, v, o, causal):
    b, h, n, d = q.shape
    p = Problem(b, h, k.shape[1], n, k.shape[2], d, causal)
    ptrs = (q.data_ptr(), k.data_ptr(), v.data_ptr(), o.data_ptr(), 0)
    scale = d ** -0.5

    def run():
        launch_kernel(kernel, *ptrs, p, scale, torch.cuda.current_stream().cuda_stream)

    return run


def graph_of(fn):
    fn()
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(GRAPH_LAUNCHES):
            fn()
    torch.cuda.synchronize()
    return g


def replay_ms(g):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(REPS):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / GRAPH_LAUNCHES)
    return statistics.median(times)


def time_rows(which, variants, rounds):
    table = []
    for dtype, d, n, causal, c in rows(which):
        b, h, q, k, v = inputs(dtype, d, n)
        fns = {}
        ref = torch.nn.functional.scaled_dot_product_attention(q[:1, :2].float(), k[:1, :2].float(),
                                                               v[:1, :2].float(), is_causal=causal)
        for var in variants:
            o = torch.empty_like(q)
            fn = our_fn(load(c, var), q, k, v, o, causal)
            fn()
            torch.cuda.synchronize()
            err = ((o[:1, :2].float() - ref).norm() / ref.norm()).item()
            if not err < 1e-2:
                print(f"  WRONG {var} {c.name}: rel err {err:.2e}", flush=True)
            fns[var] = graph_of(fn)
        run = sdpa_runner("sdpa_cudnn", q, k, v, causal)
        fns["cudnn"] = graph_of(run)
        names = list(fns)
        per = {nm: [] for nm in names}
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for nm in order:
                per[nm].append(replay_ms(fns[nm]))
        med = {nm: statistics.median(ts) for nm, ts in per.items()}
        spread = {nm: (max(ts) - min(ts)) / med[nm] for nm, ts in per.items()}
        tf = {nm: tflops(b, h, n, n, d, causal, ms) for nm, ms in med.items()}
        table.append((dtype, d, n, causal, c.name.replace("flash_fwd_wgmma_sm_90a_", ""), tf, spread, per))
        print(f"  {dtype} d{d} n{n} {'causal' if causal else 'full'}: "
              + ", ".join(f"{nm} {tf[nm]:.0f} (spread {100 * spread[nm]:.1f}%)" for nm in names), flush=True)
        print("    rounds (ms): " + "; ".join(f"{nm} " + " ".join(f"{t:.3f}" for t in per[nm]) for nm in names),
              flush=True)
        del fns, q, k, v
        torch.cuda.empty_cache()
    print(f"\n{torch.cuda.get_device_name()}, TFLOP/s by CUDA-graph replay ({GRAPH_LAUNCHES} launches a graph, "
          f"median of {REPS} replays a round, median of {rounds} rounds, rotated order), B*H*N = 64*4096")
    cols = variants + ["cudnn"]
    print("| dtype | D | N | causal | config | " + " | ".join(cols) + " | "
          + " | ".join(f"{v}/cuDNN" for v in variants)
          + ("".join(f" | {v}/{variants[0]}" for v in variants[1:])) + " | max spread |")
    print("|---" * (6 + 2 * len(variants) + len(variants) - 1 + 1) + "|")
    for dtype, d, n, causal, name, tf, spread, _ in table:
        print(f"| {dtype} | {d} | {n} | {'yes' if causal else 'no'} | {name} | "
              + " | ".join(f"{tf[c]:.0f}" for c in cols) + " | "
              + " | ".join(f"{tf[v] / tf['cudnn']:.3f}" for v in variants)
              + "".join(f" | {tf[v] / tf[variants[0]]:.3f}" for v in variants[1:])
              + f" | {100 * max(spread.values()):.1f}% |")


def check(variants):
    from autoflash.ops.forward_launch import CHECK_SHAPES, run_checked

    bad = []
    configs = [c for *_, c in rows("more")]
    configs += [cfg("bf16", 128, True, 128, 128, 3), cfg("bf16", 64, True, 192, 128, 3), cfg("fp16", 64, False, 192, 128, 2),
                cfg("bf16", 256, True, 128, 80, 2), cfg("bf16", 128, True, 64, 128, 3), cfg("fp16", 256, False, 128, 80, 2)]
    for var in variants:
        for c in configs:
            kernel = load(c, var)
            for i, (b, hq, hkv, nq, nk) in enumerate(CHECK_SHAPES):
                p = Problem(b, hq, hkv, nq, nk, c.head_dim, c.causal)
                res = run_checked(kernel, p, seed=2000 + i)
                if not res.passed:
                    bad.append(f"{var} {c.name} {(b, hq, hkv, nq, nk)}: {res.describe()}")
                    print("  FAIL", bad[-1], flush=True)
            print(f"check {var} {c.name} done", flush=True)
    print(f"ab checks: failing {bad or 'none'}", flush=True)
    return not bad


def profile(variants, which="headline"):
    """Each kernel once inside cudaProfilerStart/Stop: ours per variant, then cuDNN, per row."""
    work = []
    for dtype, d, n, causal, c in rows(which):
        if dtype != "bf16":
            continue
        b, h, q, k, v = inputs(dtype, d, n)
        o = torch.empty_like(q)
        for var in variants:
            work.append((f"{var} {c.name}", our_fn(load(c, var), q, k, v, o, causal)))
        work.append((f"cudnn causal={causal}", sdpa_runner("sdpa_cudnn", q, k, v, causal)))
    for _, fn in work:
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for name, fn in work:
        print(f"profiling: {name}", flush=True)
        fn()
        torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--rows", default="headline", choices=("headline", "more", "weak"))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--variants", default="base")
    args = ap.parse_args()
    variants = args.variants.split(",")
    t0 = time.time()
    print(torch.cuda.get_device_name(), flush=True)
    ok = True
    if args.check:
        ok = check(variants)
    if args.profile:
        profile(variants, args.rows)
    if args.time:
        time_rows(args.rows, variants, args.rounds)
    print(f"total {time.time() - t0:.0f}s", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
