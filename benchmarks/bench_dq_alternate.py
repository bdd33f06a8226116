"""flash_bwd_wgmma's DQ_ALTERNATE switch (ops/backward_wgmma.py: at D 64's producer tile, query tile it's dQ on
consumer warpgroup it % 2 instead of always the first) timed against the same tile without it, each with the
consumers' own dQ adds and with dq_via_producer=1 ("_dqp"), beside SDPA's cuDNN backward, in one run: bf16/fp16,
D 64, causal and not, N 4096 by default (B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA
events, interleaved rounds, median, spread = range of the round medians (bench_backward.time_interleaved); each
kernel's largest relative gradient error against SDPA's flash backward as a sanity check (the float64 checks:
tests/test_backward_wgmma_dq_alternate_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_alternate.py [--dtypes bf16,fp16] [--seqs 4096]
        [--precompile]
"""
import argparse
import sys

import torch

from bench_backward import backward_flops, rel, sdpa_backward, time_interleaved
from bench_backward_wgmma import key, pinned, problems

from autoflash.kernels.archs import build_arch
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.ops import backward_wgmma
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["ws", "ws_alt", "ws_dqp", "ws_alt_dqp", "sdpa_cudnn"]
PAIRS = (("ws_alt", "ws"), ("ws_alt_dqp", "ws_dqp"), ("ws_alt_dqp", "ws"), ("ws_alt", "sdpa_cudnn"),
         ("ws_alt_dqp", "sdpa_cudnn"), ("ws", "sdpa_cudnn"))


def switched(alternate, fn, *args):
    """fn(*args) with DQ_ALTERNATE set (the rendering reads it; the kernel is compiled and loaded inside)."""
    saved = backward_wgmma.DQ_ALTERNATE
    backward_wgmma.DQ_ALTERNATE = alternate
    try:
        return fn(*args)
    finally:
        backward_wgmma.DQ_ALTERNATE = saved


def configs(arch, dtype, causal):
    """name -> (config, alternate): the D 64 producer tile (the served default) with and without the switch, with
    the consumers' adds and with dq_via_producer=1."""
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, 64, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    out = {}
    for suffix, dqp in (("", -1), ("_dqp", 1)):
        for alt_name, alternate in (("", False), ("_alt", True)):
            x = c.replace(dq_via_producer=dqp)
            assert not x.problems() and switched(alternate, WGMMA.alternates_dq, x) == alternate, x.name
            out["ws" + alt_name + suffix] = (x, alternate)
    return out


def _compile(cfg_alt):
    return switched(cfg_alt[1], lambda: compile_kernel(cfg_alt[0]).report)


def precompile(arch, dtypes):
    from concurrent.futures import ProcessPoolExecutor

    cfgs = [x for t in dtypes for causal in (False, True) for x in configs(arch, t, causal).values()]
    with ProcessPoolExecutor() as pool:
        for (cfg, alt), rep in zip(cfgs, pool.map(_compile, cfgs)):
            print(f"  compiled {cfg.name} alternate={alt}: {rep.registers} registers, {rep.spills} B spilled", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--seqs", default="4096")
    parser.add_argument("--precompile", action="store_true")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    arch = device_arch(torch.cuda.current_device())[0]
    if args.precompile:
        precompile(arch, dtypes)
        return 0
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    rows = []
    for (dtype, d, n, causal), (q, k, v, dout, out, lse, ref) in problems(dtypes, [64], args.seqs):
        fns, errs = {}, {}
        for name, (cfg, alt) in configs(arch, dtype, causal).items():
            fns[name] = switched(alt, pinned, cfg, "", q, k, v, out, lse, dout, causal)
            if ref is not None:
                errs[name] = max(rel(a, r) for a, r in zip(fns[name](), ref))
        fn, _ = sdpa_backward("cudnn", q, k, v, dout, causal)
        if fn is not None:
            fns["sdpa_cudnn"] = fn
        timed = time_interleaved(fns)
        flops = backward_flops(*q.shape[:2], n, d, causal)
        tf = {name: flops / (ms * 1e-3) / 1e12 for name, (ms, _) in timed.items()}
        spread = {name: s for name, (_, s) in timed.items()}
        rows.append((dtype, d, n, causal, tf, spread))
        print(f"  {dtype} d{d} n{n} causal={causal}: " + ", ".join(f"{x} {y:.0f}" for x, y in tf.items())
              + "; max rel err vs sdpa flash " + ", ".join(f"{x} {y:.1e}" for x, y in errs.items()), flush=True)
        del q, k, v, dout, out, lse, fns, ref
        torch.cuda.empty_cache()
    print("\n| dtype | D | N | causal | " + " | ".join(NAMES) + " | " + " | ".join(f"{a}/{b}" for a, b in PAIRS)
          + " | spread ws / ws_alt / ws_alt_dqp |")
    print("|" + "---|" * (len(NAMES) + len(PAIRS) + 5))
    for dtype, d, n, causal, tf, spread in rows:
        cells = [f"{tf[x]:.0f}" if x in tf else "n/a" for x in NAMES]
        ratios = [f"{tf[a] / tf[b]:.3f}x" if a in tf and b in tf else "n/a" for a, b in PAIRS]
        sp = " / ".join(f"{100 * spread[x]:.1f}%" if x in spread else "n/a" for x in ("ws", "ws_alt", "ws_alt_dqp"))
        print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(cells + ratios) + f" | {sp} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
