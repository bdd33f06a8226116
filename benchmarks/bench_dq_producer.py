"""flash_bwd_wgmma's dq_via_producer knob (ops/backward_wgmma.py; BackwardConfig) on and off on the same tiles,
in one run: the producer default (stages 2, "ws") and the pipelined stages 3 ("pipe", D 64 only: at D 128
its staging tile does not fit), each with the consumers' own dQ adds and with the producer's bulk reductions
(the "_dqp" columns), beside SDPA's cuDNN backward. bf16/fp16, D 128/64, causal and not, N 4096 by default
(B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved rounds, median,
spread = range of the round medians (bench_backward.time_interleaved); each kernel's largest relative
gradient error against SDPA's flash backward as a sanity check (tests/test_backward_wgmma_dq_producer_gpu.py
holds the float64 checks).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_producer.py [--dtypes bf16,fp16]
        [--head-dims 128,64] [--seqs 4096] [--precompile]
"""
import argparse
import sys

import torch

from bench_backward import backward_flops, rel, sdpa_backward, time_interleaved
from bench_backward_wgmma import key, pinned, problems

from autoflash.kernels.archs import build_arch
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA


def configs(arch, dtype, d, causal):
    """name -> (config, knob on): the producer tile at stages 2 and 3, each with the knob off and on (-1 where the
    rule gives that value, else spelled 0 / 1), where valid."""
    wg_arch = build_arch(WGMMA.archs, arch)
    out = {}
    for name, stages in (("ws", 2), ("pipe", 3)):
        c = WGMMA.config(wg_arch, key(dtype, d, causal), block_m=64, block_n=128, warps=12, stages=stages, warps_q=1)
        for suffix, on in (("", False), ("_dqp", True)):
            x = c if WGMMA.dq_via_producer(c) == on else c.replace(dq_via_producer=int(on))
            if not x.problems():
                out[name + suffix] = (x, on)
    return out


def precompile(arch, dtypes, head_dims):
    from concurrent.futures import ProcessPoolExecutor

    cfgs = [x for t in dtypes for d in head_dims for causal in (False, True) for x in configs(arch, t, d, causal).values()]
    with ProcessPoolExecutor() as pool:
        for (cfg, on), rep in zip(cfgs, pool.map(_compile, cfgs)):
            print(f"  compiled {cfg.name} dq_via_producer={on}: {rep.registers} registers, {rep.spills} B spilled",
                  flush=True)


def _compile(cfg_on):
    return compile_kernel(cfg_on[0]).report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--head-dims", default="128,64")
    parser.add_argument("--seqs", default="4096")
    parser.add_argument("--precompile", action="store_true")
    args = parser.parse_args()
    dtypes, head_dims = args.dtypes.split(","), [int(x) for x in args.head_dims.split(",")]
    arch = device_arch(torch.cuda.current_device())[0]
    if args.precompile:
        precompile(arch, dtypes, head_dims)
        return 0
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    names = ["ws", "ws_dqp", "pipe", "pipe_dqp", "sdpa_cudnn"]
    rows = []
    for (dtype, d, n, causal), (q, k, v, dout, out, lse, ref) in problems(dtypes, head_dims, args.seqs):
        fns, errs = {}, {}
        for name, (cfg, on) in configs(arch, dtype, d, causal).items():
            fns[name] = pinned(cfg, "", q, k, v, out, lse, dout, causal)
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
              + "; max rel err vs sdpa flash " + ", ".join(f"{x} {y:.1e}" for x, y in errs.items()),
              flush=True)
        del q, k, v, dout, out, lse, fns, ref
        torch.cuda.empty_cache()
    pairs = (("ws_dqp", "ws"), ("pipe_dqp", "pipe"), ("pipe_dqp", "ws"), ("ws_dqp", "sdpa_cudnn"))
    print("\n| dtype | D | N | causal | " + " | ".join(names) + " | " + " | ".join(f"{a}/{b}" for a, b in pairs)
          + " | spread ws / ws_dqp |")
    print("|" + "---|" * (len(names) + len(pairs) + 5))
    for dtype, d, n, causal, tf, spread in rows:
        cells = [f"{tf[x]:.0f}" if x in tf else "n/a" for x in names]
        ratios = [f"{tf[a] / tf[b]:.3f}x" if a in tf and b in tf else "n/a" for a, b in pairs]
        sp = " / ".join(f"{100 * spread[x]:.1f}%" if x in spread else "n/a" for x in ("ws", "ws_dqp"))
        print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(cells + ratios) + f" | {sp} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
