"""Does the served D 64 non-causal backward lose its last partial wave to cuDNN? (issue 16's weakest rows)

The table's D 64 rows (16k tokens, 32 heads) launch 4096 blocks of one K/V tile each, 1 block an SM: 31.03 waves of
132, so the last wave holds 4 blocks. A kernel whose blocks are equal (non-causal) then loses ~3 % to the tail, unless
it schedules finer work. This times the served kernel (pinned, as attention_backward launches it) and SDPA's cuDNN
backward, bf16 D 64 N 4096 non-causal, batch 1, at head counts whose block counts are whole waves or not: 33 heads =
1056 blocks = 8.00 waves; 32 = 7.76; 34 = 8.24; 66 = 16.00; 64 = 15.52. If ours steps with the waves and cuDNN does
not, the tail explains the gap. TFLOP/s at 2.5x the forward's FLOPs, CUDA events, interleaved rounds, median, spread.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/backward_waves_probe.py
"""
import math

import torch

from bench_backward import backward_flops, forward_lse, sdpa_backward, time_interleaved
from bench_backward_wgmma import key, pinned

from autoflash.kernels.device import device_arch
from autoflash.ops.backward_wgmma import serving_config

N, D, SMS = 4096, 64, 132


def main():
    arch = device_arch(torch.cuda.current_device())[0]
    cfg = serving_config(arch, key("bf16", D, False))
    print(f"# {torch.cuda.get_device_name()}: {cfg.name}, bf16 D {D} N {N} non-causal, batch 1")
    print("| heads | blocks | waves | autoflash TFLOP/s | cuDNN TFLOP/s | x cuDNN | spread ours / cuDNN |")
    print("|---|---|---|---|---|---|---|")
    for heads in (32, 33, 34, 64, 66):
        g = torch.Generator(device="cuda").manual_seed(heads)
        q, k, v, dout = (torch.randn(1, heads, N, D, device="cuda", dtype=torch.bfloat16, generator=g)
                         for _ in range(4))
        out, lse, _ = forward_lse(q, k, v, False, 1 / math.sqrt(D))
        fns = {"autoflash": pinned(cfg, "", q, k, v, out, lse, dout, False)}
        fn, _ = sdpa_backward("cudnn", q, k, v, dout, False)
        if fn is not None:
            fns["cudnn"] = fn
        timed = time_interleaved(fns)
        flops = backward_flops(1, heads, N, D, False)
        tf = {n: flops / (ms * 1e-3) / 1e12 for n, (ms, _) in timed.items()}
        blocks = (N // cfg.block_n) * heads
        print(f"| {heads} | {blocks} | {blocks / SMS:.2f} | {tf['autoflash']:.0f} | {tf.get('cudnn', float('nan')):.0f} | "
              f"{tf['autoflash'] / tf.get('cudnn', float('nan')):.3f}x | "
              f"{100 * timed['autoflash'][1]:.1f}% / {100 * timed.get('cudnn', (0, 0))[1]:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
