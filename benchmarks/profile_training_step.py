"""Where a training step's attention time goes: torch.profiler over forward + backward of attention alone
(bench_training.py's attention rows: q, k, v (B, H, N, D) requiring grad, out.backward(dout)), autoflash.attention
against SDPA's default, every CUDA kernel with its count and time per step, and the step's GPU time.

    PYTHONPATH=$PWD:$PWD/benchmarks python3 benchmarks/profile_training_step.py
"""
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import autoflash

STEPS = 10


def impls():
    return {"autoflash": lambda q, k, v, c: autoflash.attention(q, k, v, causal=c),
            "sdpa_default": lambda q, k, v, c: F.scaled_dot_product_attention(q, k, v, is_causal=c)}


def main() -> None:
    for d, causal in ((64, False), (128, True)):
        n = 4096
        b, h = 16384 // n, 2048 // d
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4))
        q, k, v = (x.requires_grad_() for x in (q, k, v))
        for name, attn in impls().items():
            def step():
                out = attn(q, k, v, causal)
                out.backward(dout)
                q.grad = k.grad = v.grad = None
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(STEPS):
                step()
            end.record()
            torch.cuda.synchronize()
            wall = start.elapsed_time(end) / STEPS
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(STEPS):
                    step()
                torch.cuda.synchronize()
            rows = [e for e in prof.key_averages() if e.device_type.name == "CUDA" or getattr(e, "cuda_time_total", 0)]
            print(f"\n## bf16 D {d} causal={causal} B {b} H {h} N {n}: {name}, {wall * 1e3:.0f} us a step (events, "
                  f"{STEPS} steps back to back)")
            print("| kernel | calls a step | us a step |")
            print("|---|---|---|")
            total = 0.0
            for e in sorted(rows, key=lambda e: -getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0))):
                t = getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0)) / STEPS
                if t <= 0:
                    continue
                total += t
                print(f"| {e.key[:90]} | {e.count / STEPS:g} | {t:.1f} |")
            print(f"| (sum of kernels) | | {total:.1f} |")


if __name__ == "__main__":
    main()
