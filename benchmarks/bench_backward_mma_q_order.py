"""flash_bwd_mma's query-tile order (ops/backward_kernels.Q_ORDER) A/B on one GPU, beside SDPA's FlashAttention-2
backward: the H200's served flash_bwd_mma config for each key (tuned entry at the row's N, else the default) in
today's order (q0), descending (q1_desc, FlashAttention-2's) and rotated by the K/V tile (q2_rot), each launched as
attention_backward launches it (bench_backward_wgmma.pinned) on one saved O and LSE (SDPA's flash forward). Problem as
benchmarks/bench_backward.py: 16k tokens a row (B = 16384 / N), H = 2048 / D; TFLOP/s at 2.5x the forward's FLOPs,
halved for causal; CUDA events, interleaved rounds, median; spread = range of the round medians. Each kernel's largest
relative gradient error against SDPA flash's gradients is printed as a sanity check (the float64 checks are
tests/test_backward_mma_q_order_gpu.py).

    python benchmarks/bench_backward_mma_q_order.py [--dtypes bf16] [--head-dims 64,128] [--seqs 4096,16384]
    python benchmarks/bench_backward_mma_q_order.py --precompile   # its kernels and the GPU tests', in parallel
"""
import argparse

import torch

from bench_backward import backward_flops, rel, sdpa_backward, time_interleaved
from bench_backward_wgmma import pinned

from autoflash.kernels.compile import compile_kernel
from autoflash.ops import backward_kernels
from autoflash.serve import dispatch

ORDERS = {"q0": 0, "q1_desc": 1, "q2_rot": 2}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
H200 = ("sm_90", "NVIDIA H200")  # (--precompile runs without a GPU too)


def mma_config(arch: str, device_name: str, dtype: str, d: int, causal: bool, n: int):
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False, window=False, softcap=False, sinks=False,
               alibi=False)
    return dispatch.explain(arch, device_name, "backward", key, n, template="flash_bwd_mma")[0]


def with_order(order: int, fn, *args):
    """fn(*args) with Q_ORDER = order (the rendering reads it)."""
    saved = backward_kernels.Q_ORDER
    backward_kernels.Q_ORDER = order
    try:
        return fn(*args)
    finally:
        backward_kernels.Q_ORDER = saved


def _compile(item):
    cfg, order = item
    return with_order(order, lambda: compile_kernel(cfg).report)


def precompile(arch: str, device_name: str) -> None:
    """Every (config, order) this script and tests/test_backward_mma_q_order_gpu.py use (bf16/fp16, D 64/128/256)."""
    from concurrent.futures import ProcessPoolExecutor

    cfgs = dict.fromkeys(mma_config(arch, device_name, t, d, c, n) for t in DTYPES for d in (64, 128, 256)
                         for c in (False, True) for n in (4096, 16384))
    items = [(c, o) for c in cfgs for o in ORDERS.values()]
    with ProcessPoolExecutor() as pool:
        for (cfg, order), rep in zip(items, pool.map(_compile, items)):
            print(f"  compiled {cfg.name} q_order={order}: {rep.registers} registers, {rep.spills} B spilled, "
                  f"stack {rep.stack_frame}", flush=True)


def problem(dtype: str, d: int, n: int, causal: bool):
    b, h = max(1, 16384 // n), 2048 // d
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=DTYPES[dtype]) for _ in range(4))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, scale=d ** -0.5)[:2]
    return q, k, v, dout, out.contiguous(), lse.float().contiguous()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16")
    parser.add_argument("--head-dims", default="64,128")
    parser.add_argument("--seqs", default="4096,16384")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precompile", action="store_true", help="only compile the kernels (parallel), then exit")
    args = parser.parse_args()
    if args.precompile:
        precompile(*H200)
        return 0
    from autoflash.kernels.device import device_arch

    arch, device_name = device_arch(torch.cuda.current_device())
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs)")
    names = list(ORDERS) + ["sdpa_flash"]
    rows = []
    for dtype in args.dtypes.split(","):
        for d in (int(x) for x in args.head_dims.split(",")):
            for n in (int(x) for x in args.seqs.split(",")):
                for causal in (False, True):
                    q, k, v, dout, out, lse = problem(dtype, d, n, causal)
                    cfg = mma_config(arch, device_name, dtype, d, causal, n)
                    fns = {name: with_order(o, pinned, cfg, "", q, k, v, out, lse, dout, causal)
                           for name, o in ORDERS.items()}
                    flash, ref = sdpa_backward("flash", q, k, v, dout, causal)
                    errs = {}
                    if flash is not None:
                        errs = {name: max(rel(a, r) for a, r in zip(fn(), ref)) for name, fn in fns.items()}
                        fns["sdpa_flash"] = flash
                    timed = time_interleaved(fns, args.rounds)
                    flops = backward_flops(*q.shape[:2], n, d, causal)
                    tf = {name: flops / (ms * 1e-3) / 1e12 for name, (ms, _) in timed.items()}
                    rows.append((dtype, d, n, causal, cfg.name, tf, {x: s for x, (_, s) in timed.items()}))
                    print(f"  {dtype} d{d} n{n} causal={causal} {cfg.name}: "
                          + ", ".join(f"{x} {y:.0f}" for x, y in tf.items()) + "; max rel err vs sdpa flash "
                          + ", ".join(f"{x} {y:.1e}" for x, y in errs.items()), flush=True)
                    del q, k, v, dout, out, lse, fns, flash, ref
                    torch.cuda.empty_cache()
    print("\n| dtype | D | N | causal | " + " | ".join(names) + " | q1/q0 | q2/q0 | q0/flash | best/flash | spread "
          + " / ".join(names) + " |")
    print("|" + "---|" * (len(names) + 9))
    for dtype, d, n, causal, _, tf, spread in rows:
        flash = tf.get("sdpa_flash")
        best = max(tf[x] for x in ORDERS)
        ratios = [f"{tf['q1_desc'] / tf['q0']:.3f}x", f"{tf['q2_rot'] / tf['q0']:.3f}x"]
        ratios += [f"{tf['q0'] / flash:.3f}x", f"{best / flash:.3f}x"] if flash else ["n/a", "n/a"]
        print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(f"{tf[x]:.0f}" if x in tf else "n/a" for x in names)
              + " | " + " | ".join(ratios) + " | " + " / ".join(f"{100 * spread[x]:.1f}%" for x in spread) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
