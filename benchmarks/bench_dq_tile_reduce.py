"""flash_bwd_wgmma's dq_via_producer=2 (ops/backward_wgmma.py: the staging tile unpadded and each query tile's dQ
reduced by ONE bulk op instead of one per row, dq_via_producer=1) timed on the producer tile (bm64 bn128 w12
s2, the served default) against the same tile with dq_via_producer's per-row ops ("dqp_rows") and with the
consumers' own red.global adds ("adds"), beside SDPA's cuDNN backward, in one run: bf16/fp16, D 64/128, causal and
not, N 4096 by default (B = 16384 / N, H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved
rounds, median, spread = range of the round medians (bench_backward.time_interleaved); each kernel's largest
relative gradient error against SDPA's flash backward (the float64 checks: tests/test_backward_wgmma_dq_tile_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_dq_tile_reduce.py [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096] [--precompile]
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

NAMES = ["adds", "dqp_rows", "dqp_tile", "sdpa_cudnn"]
PAIRS = (("dqp_tile", "dqp_rows"), ("dqp_tile", "adds"), ("dqp_rows", "adds"), ("dqp_tile", "sdpa_cudnn"),
         ("adds", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> config: the producer tile with dq_via_producer 0, 1 (a bulk op a row), 2 (a bulk op a tile), spelled -1
    where the rule gives that value."""
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    out = {}
    for name, mode in (("adds", 0), ("dqp_rows", 1), ("dqp_tile", 2)):
        x = c if WGMMA.dq_mode(c) == mode else c.replace(dq_via_producer=mode)
        assert not x.problems(), (x.name, x.problems())
        out[name] = x
    return out


def _compile(cfg):
    return compile_kernel(cfg).report


def precompile(arch, dtypes, head_dims):
    from concurrent.futures import ProcessPoolExecutor

    cfgs = [x for t in dtypes for d in head_dims for causal in (False, True) for x in configs(arch, t, d, causal).values()]
    with ProcessPoolExecutor() as pool:
        for cfg, rep in zip(cfgs, pool.map(_compile, cfgs)):
            print(f"  compiled {cfg.name}: {rep.registers} registers, {rep.spills} B spilled", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--head-dims", default="64,128")
    parser.add_argument("--seqs", default="4096")
    parser.add_argument("--precompile", action="store_true")
    args = parser.parse_args()
    dtypes, head_dims = args.dtypes.split(","), [int(x) for x in args.head_dims.split(",")]
    arch = device_arch(torch.cuda.current_device())[0]
    if args.precompile:
        precompile(arch, dtypes, head_dims)
        return 0
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    rows = []
    for (dtype, d, n, causal), (q, k, v, dout, out, lse, ref) in problems(dtypes, head_dims, args.seqs):
        fns, errs = {}, {}
        for name, cfg in configs(arch, dtype, d, causal).items():
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
              + "; max rel err vs sdpa flash " + ", ".join(f"{x} {y:.1e}" for x, y in errs.items()), flush=True)
        del q, k, v, dout, out, lse, fns, ref
        torch.cuda.empty_cache()
    print("\n| dtype | D | N | causal | " + " | ".join(NAMES) + " | " + " | ".join(f"{a}/{b}" for a, b in PAIRS)
          + " | spread adds / dqp_rows / dqp_tile |")
    print("|" + "---|" * (len(NAMES) + len(PAIRS) + 5))
    for dtype, d, n, causal, tf, spread in rows:
        cells = [f"{tf[x]:.0f}" if x in tf else "n/a" for x in NAMES]
        ratios = [f"{tf[a] / tf[b]:.3f}x" if a in tf and b in tf else "n/a" for a, b in PAIRS]
        sp = " / ".join(f"{100 * spread[x]:.1f}%" if x in spread else "n/a" for x in ("adds", "dqp_rows", "dqp_tile"))
        print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(cells + ratios) + f" | {sp} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
