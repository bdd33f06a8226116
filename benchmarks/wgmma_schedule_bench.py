"""flash_fwd_wgmma kernels alone (no host checks), CUDA-graph replay, on the GPU:

1. varlen prefill as benchmarks/bench_varlen.py sets it (16 sequences of 128..8192 tokens, seed 0,
   16 heads, D 128, bf16, causal) against the dense kernel on 16 x the mean length, each with the
   config autoflash's API picks for it; TFLOP/s of useful pairs (issue 15's bar: varlen >= 0.9x dense);
2. (--variants window softcap alibi) bench_variants.py's variants at N 4096 (window (1024, 0) causal,
   softcap 30, ALiBi causal) with their default tiles, the tuned plain kernel's tiles and (window)
   other shapes, beside the tuned plain kernel: TFLOP/s per visible pair (issue 17's bar: >= 0.9x plain).

A graph holds --launches launches; each round replays it --reps times (median), rounds interleave
the kernels; the table gives the median over rounds and the spread (max - min) / median.

    PYTHONPATH=$PWD python benchmarks/wgmma_schedule_bench.py [--variants window softcap alibi] [--rounds 5] [--compile-only]
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from autoflash.kernels.compile import compile_kernel  # noqa: E402
from autoflash.kernels.device import device_arch  # noqa: E402
from autoflash.ops.forward_base import Problem  # noqa: E402
from autoflash.ops.forward_launch import launch  # noqa: E402
from autoflash.serve.api import choose_config, loaded_kernel  # noqa: E402

import common  # noqa: E402  (benchmarks/common.py, this script's folder)

HEADS, D = 16, 128


def graph_ms(fn, launches: int, reps: int) -> float:
    """Median per-launch time of fn replayed in a CUDA graph of `launches` calls (if the capture
    fails: `launches` plain calls between the events, said once)."""
    fn()  # warm-up (and the launch plan built) outside any capture
    torch.cuda.synchronize()
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(launches):
                fn()
        run = graph.replay
    except RuntimeError as exc:
        if not getattr(graph_ms, "warned", False):
            print(f"CUDA graph capture failed ({str(exc)[:120]}): timing plain launches")
            graph_ms.warned = True

        def run():
            for _ in range(launches):
                fn()
    run()
    torch.cuda.synchronize()
    return statistics.median(common.event_times(run, reps)) / launches


def runner(cfg, p: Problem, q, k, v, *keep):
    """A launch of cfg on p (scale 1/sqrt(D)) on the current torch stream, writing a fresh output.
    keep: the device arrays p points into (cu_seqlens, slopes), held as long as the runner."""
    kernel = loaded_kernel(cfg, 0)
    out = torch.empty_like(q)

    def run():
        launch(kernel, q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), 0, p, D ** -0.5,
               torch.cuda.current_stream().cuda_stream)
        return keep
    return run


def varlen_cases(arch: str, name: str) -> dict:
    lengths = np.random.default_rng(0).integers(128, 8193, 16).tolist()
    b, total, longest, mean = len(lengths), sum(lengths), max(lengths), sum(lengths) // len(lengths)
    q, k, v = (torch.randn(total, HEADS, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int32, device="cuda")
    packed = (0, D, HEADS * D)
    pv = Problem(b, HEADS, HEADS, longest, longest, D, True, strides=(packed,) * 4, cu_seqlens_q=cu.data_ptr(),
                 cu_seqlens_k=cu.data_ptr(), total_q=total, total_k=total)
    dq, dk, dv = (torch.randn(b, HEADS, mean, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    pd = Problem(b, HEADS, HEADS, mean, mean, D, True)
    cv, cd = (choose_config(arch, name, "bf16", D, True, n) for n in (longest, mean))
    print(f"varlen lengths {lengths}; configs: varlen {cv.name}, dense {cd.name}")
    useful = 2.0 * HEADS * D * sum(n * (n + 1) for n in lengths)
    cases = {"varlen": (runner(cv, pv, q, k, v, cu), useful),
             "dense": (runner(cd, pd, dq, dk, dv), 2.0 * b * HEADS * D * mean * (mean + 1))}
    if cd != cv:  # the dense problem with the varlen config too: the schedule alone
        cases["dense, varlen's config"] = (runner(cv, pd, dq, dk, dv), cases["dense"][1])
    return cases


def with_tiles(cfg, bm: int, bn: int, st: int):
    return type(cfg)(**{**cfg.to_dict(), "block_m": bm, "block_n": bn, "warps": 4 * (bm // 64 + 1), "stages": st})


def variant_cases(arch: str, name: str, variant: str, n: int = 4096, left: int = 1024) -> dict:
    """The plain kernel (tuned) and the variant with its default tiles, the plain kernel's tiles and
    (window) other shapes: bench_variants.py's settings (window (1024, 0) causal, softcap 30, ALiBi
    causal), TFLOP/s per visible pair."""
    batch, causal = 32768 // n, variant != "softcap"
    q, k, v = (torch.randn(batch, HEADS, n, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    slopes = 2.0 ** (-8.0 * torch.arange(1, HEADS + 1, dtype=torch.float32, device="cuda") / HEADS)
    rows = np.arange(n)
    seen = np.minimum(rows + 1, left + 1) if variant == "window" else rows + 1 if causal else np.full(n, n)
    per_pair = 4.0 * batch * HEADS * D
    plain = choose_config(arch, name, "bf16", D, causal, n)
    plain_pairs = int((rows + 1).sum()) if causal else n * n
    cases = {f"plain {'causal' if causal else 'non-causal'} br{plain.block_m} bc{plain.block_n} s{plain.stages}":
             (runner(plain, Problem(batch, HEADS, HEADS, n, n, D, causal), q, k, v), per_pair * plain_pairs)}
    fields = {"window": dict(window_left=left, window_right=0), "softcap": dict(softcap=30.0),
              "alibi": dict(alibi_slopes=slopes.data_ptr())}[variant]
    pv = Problem(batch, HEADS, HEADS, n, n, D, causal, **fields)
    base = choose_config(arch, name, "bf16", D, causal, n, {variant: True})
    tiles = [(base.block_m, base.block_n, base.stages), (plain.block_m, plain.block_n, plain.stages)]
    if variant == "window":
        tiles += [(128, 64, 4), (64, 128, 3), (64, 64, 4)]
    for bm, bn, st in dict.fromkeys(tiles):
        cfg = with_tiles(base, bm, bn, st)
        if cfg.problems():
            print(f"skip {cfg.name}: {cfg.problems()}")
            continue
        spills = compile_kernel(cfg).report.spills  # the tuner refuses spilling configs: say so here
        label = f"{variant} br{bm} bc{bn} s{st}" + (f" ({spills} B spilled)" if spills else "")
        cases[label] = (runner(cfg, pv, q, k, v, slopes), per_pair * int(seen.sum()))
    return cases


def measure(cases: dict, rounds: int, launches: int, reps: int) -> None:
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (fn, _) in cases.items():
            times[name].append(graph_ms(fn, launches, reps))
    first = next(iter(cases))
    print("| kernel | ms | TFLOP/s | spread | vs first row |\n|---|---|---|---|---|")
    rates = {}
    for name, ts in times.items():
        ms = statistics.median(ts)
        rates[name] = cases[name][1] / (ms * 1e-3) / 1e12
        print(f"| {name} | {ms:.3f} | {rates[name]:.0f} | {(max(ts) - min(ts)) / ms:.1%} | "
              f"{rates[name] / rates[first]:.2f}x |")


def compile_all(arch: str, name: str) -> None:
    """Compile (into the disk cache, 8 processes) every config this script and
    `bench_variants.py --head-dims 128 64 --seqs 4096 16384` launch: the API's choices."""
    from concurrent.futures import ProcessPoolExecutor

    cfgs = set()
    for d in (128, 64):
        for n in (4096, 7957, 4195, 16384):
            for causal in (False, True):
                cfgs.add(choose_config(arch, name, "bf16", d, causal, n))
            for flag, causal in (("window", True), ("softcap", False), ("sinks", False), ("alibi", True)):
                cfgs.add(choose_config(arch, name, "bf16", d, causal, n, {flag: True}))
    for flag, causal in (("window", True), ("softcap", False), ("alibi", True)):
        base, plain = (choose_config(arch, name, "bf16", D, causal, 4096, f) for f in ({flag: True}, {}))
        extra = ((128, 64, 4), (64, 128, 3), (64, 64, 4)) if flag == "window" else ()
        for bm, bn, st in ((plain.block_m, plain.block_n, plain.stages),) + extra:
            if not with_tiles(base, bm, bn, st).problems():
                cfgs.add(with_tiles(base, bm, bn, st))
    with ProcessPoolExecutor(8, mp_context=multiprocessing.get_context("spawn")) as pool:
        for cfg, report in zip(cfgs, pool.map(_compile_report, cfgs)):
            print(f"{cfg.name}: {report}")


def _compile_report(cfg) -> str:
    from autoflash.kernels.compile import compile_kernel

    try:
        r = compile_kernel(cfg).report
        return f"{r.registers} registers, {r.spills} B spilled"
    except Exception as exc:  # one config failing must not hide the others
        return f"FAILED {type(exc).__name__}: {str(exc)[:300]}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--launches", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--variants", nargs="*", default=[], choices=("window", "softcap", "alibi"))
    ap.add_argument("--compile-only", action="store_true", help="only fill the kernel cache (no GPU time)")
    args = ap.parse_args()
    torch.manual_seed(0)
    arch, name = device_arch(0)
    if args.compile_only:
        compile_all(arch, name)
        return
    print(f"{torch.cuda.get_device_name()}; graph of {args.launches} launches, median of {args.reps} replays, "
          f"{args.rounds} rounds")
    measure(varlen_cases(arch, name), args.rounds, args.launches, args.reps)
    for variant in args.variants:
        measure(variant_cases(arch, name, variant), args.rounds, args.launches, args.reps)


if __name__ == "__main__":
    main()
