"""Where a training step's attention time goes: torch.profiler over forward + backward of attention alone
(bench_training.py's attention rows: q, k, v (B, H, N, D) requiring grad, out.backward(dout)), autoflash.attention
against SDPA's default, every CUDA kernel with its count and time per step, and the step's GPU time; then
(--model) bench_training.py's 4-layer decoder step, its kernels grouped by name, largest first; (--model --host) the
same step's host side: how long the CPU takes to enqueue a step against the step's wall time (a CPU-bound step leaves
the GPU idle) and the CPU ops with the most self time.

    PYTHONPATH=$PWD:$PWD/benchmarks python3 benchmarks/profile_training_step.py [--model [--host]]
"""
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import autoflash

STEPS = 10


def impls():
    return {"autoflash": lambda q, k, v, c: autoflash.attention(q, k, v, causal=c),
            "sdpa_default": lambda q, k, v, c: F.scaled_dot_product_attention(q, k, v, is_causal=c)}


def table(prof, steps: int, top: int = 0) -> None:
    rows = [(e.key, e.count / steps, getattr(e, "device_time_total", getattr(e, "cuda_time_total", 0)) / steps)
            for e in prof.key_averages()]
    rows = sorted((r for r in rows if r[2] > 0), key=lambda r: -r[2])
    print("| kernel | calls a step | us a step |")
    print("|---|---|---|")
    for key, count, t in rows[:top or len(rows)]:
        print(f"| {key[:90]} | {count:g} | {t:.1f} |")
    print(f"| (sum of kernels) | | {sum(r[2] for r in rows):.1f} |")


def host_table(step, name: str, steps: int = 5) -> None:
    """Enqueue time (CPU, until step() returns) against wall time (until the GPU is done) per step, interleaving
    nothing else; then the CPU ops with the most self time in a profiled run of the same steps."""
    enqueue, wall = [], []
    for _ in range(steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        enqueue.append(t1 - t0)
        wall.append(time.perf_counter() - t0)
    med = sorted(zip(wall, enqueue))[steps // 2]
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    print(f"\n## host side, {name}: step {med[0] * 1e3:.2f} ms wall, CPU enqueue {med[1] * 1e3:.2f} ms "
          f"(median of {steps}; the kernels' sum: --model alone)")
    print("| CPU op | calls a step | self CPU us a step | CPU us a step (with children) |")
    print("|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]:
        print(f"| {e.key[:70]} | {e.count / 3:g} | {e.self_cpu_time_total / 3:.0f} | {e.cpu_time_total / 3:.0f} |")


def model(host: bool = False) -> None:
    import copy

    from bench_training import IMPLS, Decoder
    vocab, width, heads, layers, seq, batch = 8192, 2048, 16, 4, 4096, 2
    torch.manual_seed(0)
    base = Decoder(vocab, width, heads, layers).cuda().to(torch.bfloat16)
    tokens = torch.randint(0, vocab, (batch, seq + 1), device="cuda")
    for name, attn in IMPLS.items():
        m = copy.deepcopy(base)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def step():
            loss = F.cross_entropy(m(tokens[:, :-1], attn).float().reshape(-1, vocab), tokens[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        if host:
            host_table(step, name)
            continue
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        print(f"\n## model step ({layers} layers, B {batch}, N {seq}, D {width // heads}): {name}")
        table(prof, 3, top=18)


def main() -> None:
    import sys
    if "--model" in sys.argv:
        model(host="--host" in sys.argv)
        return
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
            print(f"\n## bf16 D {d} causal={causal} B {b} H {h} N {n}: {name}, {wall * 1e3:.0f} us a step (events, "
                  f"{STEPS} steps back to back)")
            table(prof, STEPS)


if __name__ == "__main__":
    main()
