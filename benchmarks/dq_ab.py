"""The A/B run the dQ-path benchmarks share (bench_dq_producer.py, bench_dq_tile_reduce.py):
the flash_bwd_wgmma configs a script names, each launched as attention_backward launches it on the same inputs,
beside SDPA's cuDNN backward, in one run: TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved rounds,
median, spread = range of the round medians (bench_backward.time_interleaved); each kernel's largest relative
gradient error against SDPA's flash backward as a sanity check (the float64 checks are the GPU tests). A script gives
configs(arch, dtype, d, causal) -> {name: (config, switches)}, switches being ops/backward_wgmma module flags set
while the kernel is rendered, compiled and loaded."""
import argparse
import contextlib

import torch

from bench_backward import backward_flops, rel, sdpa_backward, time_interleaved
from bench_backward_wgmma import pinned, problems

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.ops import backward_wgmma


@contextlib.contextmanager
def switched(values: dict):
    """ops/backward_wgmma's module flags set to `values` inside the block (the rendering reads them)."""
    saved = {name: getattr(backward_wgmma, name) for name in values}
    for name, value in values.items():
        setattr(backward_wgmma, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(backward_wgmma, name, value)


def _compile(item):
    cfg, switches = item
    with switched(switches):
        return compile_kernel(cfg).report


def precompile(items) -> None:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor() as pool:
        for (cfg, switches), rep in zip(items, pool.map(_compile, items)):
            print(f"  compiled {cfg.name} {switches or ''}: {rep.registers} registers, {rep.spills} B spilled", flush=True)


def main(doc: str, configs, names, pairs, spread_names, head_dims="64,128") -> int:
    """Parse --dtypes/--head-dims/--seqs/--precompile, then time every problem and print the table: the rates of
    `names`, the ratios `pairs` and the spreads of `spread_names`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--head-dims", default=head_dims)
    parser.add_argument("--seqs", default="4096")
    parser.add_argument("--tokens", type=int, default=16384, help="batch x N of every row (16 heads at D 128)")
    parser.add_argument("--causal", default="false,true", help="causal values of the rows (default both)")
    parser.add_argument("--precompile", action="store_true", help="only compile the kernels (parallel), then exit")
    args = parser.parse_args()
    dtypes, dims = args.dtypes.split(","), [int(x) for x in args.head_dims.split(",")]
    arch = device_arch(torch.cuda.current_device())[0]
    if args.precompile:
        precompile([x for t in dtypes for d in dims for causal in [x == "true" for x in args.causal.split(",")]
                    for x in configs(arch, t, d, causal).values()])
        return 0
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    rows = []
    causal_values = [x == "true" for x in args.causal.split(",")]
    for (dtype, d, n, causal), (q, k, v, dout, out, lse, ref) in problems(dtypes, dims, args.seqs, args.tokens,
                                                                          causal_values):
        fns, errs = {}, {}
        for name, (cfg, switches) in configs(arch, dtype, d, causal).items():
            with switched(switches):
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
    print("\n| dtype | D | N | causal | " + " | ".join(names) + " | " + " | ".join(f"{a}/{b}" for a, b in pairs)
          + f" | spread {' / '.join(spread_names)} |")
    print("|" + "---|" * (len(names) + len(pairs) + 5))
    for dtype, d, n, causal, tf, spread in rows:
        cells = [f"{tf[x]:.0f}" if x in tf else "n/a" for x in names]
        ratios = [f"{tf[a] / tf[b]:.3f}x" if a in tf and b in tf else "n/a" for a, b in pairs]
        sp = " / ".join(f"{100 * spread[x]:.1f}%" if x in spread else "n/a" for x in spread_names)
        print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(cells + ratios) + f" | {sp} |")
    return 0
