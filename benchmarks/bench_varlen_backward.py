"""attention_varlen's backward (flash_bwd_mma varlen mode) on a packed batch of mixed lengths against
the dense backward on the same batch padded to the longest sequence (autoflash.attention's served
backward, flash_bwd_wgmma on the H200) and SDPA's (padded, its default backend). Kernel time of the
backward only (the forward's O and LSE computed once), CUDA events, median of `--reps` after
warm-up. TFLOP/s count the useful (unpadded) work of each: 2.5 x 4 x sum(Nq_b x Nk_b) x H x D,
halved for causal.

  python benchmarks/bench_varlen_backward.py [--heads 16] [--head-dim 128] [--reps 20]
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np


def median_ms(fn, reps: int) -> float:
    import torch

    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def main() -> None:
    import torch

    import autoflash
    from autoflash.serve.autograd import attention_backward
    from autoflash.serve.varlen_grad import attention_varlen_backward

    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    h, d = args.heads, args.head_dim
    rng = np.random.default_rng(0)
    print(f"{'lengths':>28} {'causal':>6} {'varlen ms':>9} {'TF/s':>6} {'padded ms':>9} {'TF/s':>6} "
          f"{'sdpa ms':>8} {'TF/s':>6}")
    for lens in (rng.integers(256, 4097, 8).tolist(), [4096] + [128] * 15, [1024] * 8):
        lens = [int(n) for n in lens]
        total, n_max = sum(lens), max(lens)
        cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32, device="cuda")
        q, k, v, do = (torch.randn(total, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        dense = [torch.zeros(len(lens), h, n_max, d, device="cuda", dtype=torch.bfloat16) for _ in range(4)]
        for b, (s, n) in enumerate(zip(cu[:-1].tolist(), lens)):
            for x, y in zip((q, k, v, do), dense):
                y[b, :, :n] = x[s:s + n].transpose(0, 1)
        for causal in (False, True):
            out, lse = autoflash.attention_varlen(q, k, v, cu, cu, n_max, n_max, causal=causal, return_lse=True)
            t_var = median_ms(lambda: attention_varlen_backward(q, k, v, out, lse, do, cu, cu, n_max, n_max,
                                                                causal=causal), args.reps)
            dq_, dk_, dv_, ddo = dense
            dout_, dlse = autoflash.attention(dq_, dk_, dv_, causal=causal, return_lse=True)
            t_pad = median_ms(lambda: attention_backward(dq_, dk_, dv_, dout_, dlse, ddo, causal=causal), args.reps)
            xs = [t.clone().requires_grad_() for t in (dq_, dk_, dv_)]
            o = torch.nn.functional.scaled_dot_product_attention(*xs, is_causal=causal)
            t_sdpa = median_ms(lambda: torch.autograd.grad(o, xs, ddo, retain_graph=True), args.reps)
            flops = 2.5 * 4 * sum(n * n for n in lens) * h * d / (2 if causal else 1)
            label = f"{len(lens)} seqs, {total} tok, max {n_max}"
            print(f"{label:>28} {causal!s:>6} {t_var:9.3f} {flops / t_var / 1e9:6.0f} {t_pad:9.3f} "
                  f"{flops / t_pad / 1e9:6.0f} {t_sdpa:8.3f} {flops / t_sdpa / 1e9:6.0f}", flush=True)


if __name__ == "__main__":
    main()
