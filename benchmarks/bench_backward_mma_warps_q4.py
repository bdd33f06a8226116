"""flash_bwd_mma's warps_q=4 (ops/backward_kernels.WARPS_Q4: FlashAttention-2's D 64 S/dP warp layout) A/B on one GPU,
beside SDPA's FlashAttention-2 backward: the served (tuned) flash_bwd_mma config of each key against every warps_q=4
tile the rules keep (8 warps, stages 2; block_m, block_n in 64/128), each launched as attention_backward launches it
(bench_backward_wgmma.pinned) on one saved O and LSE (SDPA's flash forward). Problem as benchmarks/bench_backward.py:
16k tokens a row (B = 16384 / N), H = 2048 / D; TFLOP/s at 2.5x the forward's FLOPs, halved for causal; CUDA events,
interleaved rounds, median; spread = range of the round medians. Each kernel's largest relative gradient error
against SDPA flash's gradients is printed as a sanity check (float64 checks: tests/test_backward_mma_warps_q4_gpu.py).

    python benchmarks/bench_backward_mma_warps_q4.py [--dtypes bf16] [--seqs 4096,16384]
    python benchmarks/bench_backward_mma_warps_q4.py --precompile   # its kernels and the GPU tests', in parallel
"""
import argparse

import torch

from bench_backward import backward_flops, rel, sdpa_backward, time_interleaved
from bench_backward_wgmma import pinned

from autoflash.kernels.compile import compile_kernel
from autoflash.ops import backward_kernels
from autoflash.serve import dispatch

backward_kernels.WARPS_Q4 = True  # this script's subject (module level: the --precompile workers import it too)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
H200 = ("sm_90", "NVIDIA H200")  # (--precompile runs without a GPU too)
D = 64


def key(dtype: str, causal: bool) -> dict:
    return dict(dtype=dtype, head_dim=D, causal=causal, deterministic=False, window=False, softcap=False, sinks=False,
                alibi=False)


def served(arch: str, device_name: str, dtype: str, causal: bool, n: int):
    return dispatch.explain(arch, device_name, "backward", key(dtype, causal), n, template="flash_bwd_mma")[0]


def candidates(arch: str, dtype: str, causal: bool) -> dict:
    """label -> every valid warps_q=4 config of the key (e.g. wq4_128x64)."""
    return {f"wq4_{c.block_m}x{c.block_n}": c for c in backward_kernels.TEMPLATE.space(arch, key(dtype, causal))
            if c.warps_q == 4 and not c.problems()}


def _compile(cfg):
    backward_kernels.WARPS_Q4 = True
    return compile_kernel(cfg).report


def precompile(arch: str, device_name: str) -> None:
    """Every config this script and tests/test_backward_mma_warps_q4_gpu.py use (bf16/fp16, causal both)."""
    from concurrent.futures import ProcessPoolExecutor

    cfgs = dict.fromkeys([served(arch, device_name, t, c, n) for t in DTYPES for c in (False, True)
                          for n in (4096, 16384)]
                         + [x for t in DTYPES for c in (False, True) for x in candidates(arch, t, c).values()])
    with ProcessPoolExecutor() as pool:
        for cfg, rep in zip(cfgs, pool.map(_compile, cfgs)):
            print(f"  compiled {cfg.name}: {rep.registers} registers, {rep.spills} B spilled, "
                  f"stack {rep.stack_frame}", flush=True)


def problem(dtype: str, n: int, causal: bool):
    b, h = max(1, 16384 // n), 2048 // D
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(b, h, n, D, device="cuda", dtype=DTYPES[dtype]) for _ in range(4))
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, scale=D ** -0.5)[:2]
    return q, k, v, dout, out.contiguous(), lse.float().contiguous()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="bf16")
    parser.add_argument("--seqs", default="4096,16384")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--precompile", action="store_true", help="only compile the kernels (parallel), then exit")
    args = parser.parse_args()
    if args.precompile:
        precompile(*H200)
        return 0
    from autoflash.kernels.device import device_arch

    arch, device_name = device_arch(torch.cuda.current_device())
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs), D {D}")
    rows = []
    for dtype in args.dtypes.split(","):
        for n in (int(x) for x in args.seqs.split(",")):
            for causal in (False, True):
                q, k, v, dout, out, lse = problem(dtype, n, causal)
                cfgs = {"served": served(arch, device_name, dtype, causal, n), **candidates(arch, dtype, causal)}
                fns = {name: pinned(c, "", q, k, v, out, lse, dout, causal) for name, c in cfgs.items()}
                flash, ref = sdpa_backward("flash", q, k, v, dout, causal)
                errs = {}
                if flash is not None:
                    errs = {name: max(rel(a, r) for a, r in zip(fn(), ref)) for name, fn in fns.items()}
                    fns["sdpa_flash"] = flash
                timed = time_interleaved(fns, args.rounds)
                flops = backward_flops(*q.shape[:2], n, D, causal)
                tf = {name: flops / (ms * 1e-3) / 1e12 for name, (ms, _) in timed.items()}
                rows.append((dtype, n, causal, cfgs["served"].name, tf, {x: s for x, (_, s) in timed.items()}))
                print(f"  {dtype} d{D} n{n} causal={causal} served {cfgs['served'].name}: "
                      + ", ".join(f"{x} {y:.0f}" for x, y in tf.items()) + "; max rel err vs sdpa flash "
                      + ", ".join(f"{x} {y:.1e}" for x, y in errs.items()), flush=True)
                del q, k, v, dout, out, lse, fns, flash, ref
                torch.cuda.empty_cache()
    print("\n| dtype | D | N | causal | served | best wq4 | best wq4 / served | served / flash | best / flash | "
          "every wq4 / served | spread (served / best wq4 / flash) |")
    print("|" + "---|" * 11)
    for dtype, n, causal, _, tf, spread in rows:
        flash = tf.get("sdpa_flash")
        wq4 = {x: y for x, y in tf.items() if x.startswith("wq4_")}
        best = max(wq4, key=wq4.get)
        top = max(tf["served"], wq4[best])
        print(f"| {dtype} | {D} | {n} | {causal} | {tf['served']:.0f} | {best} {wq4[best]:.0f} | "
              f"{wq4[best] / tf['served']:.3f}x | "
              + (f"{tf['served'] / flash:.3f}x | {top / flash:.3f}x | " if flash else "n/a | n/a | ")
              + ", ".join(f"{x[4:]} {y / tf['served']:.3f}" for x, y in wq4.items()) + " | "
              + " / ".join(f"{100 * spread[x]:.1f}%" for x in ("served", best, "sdpa_flash") if x in spread) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
