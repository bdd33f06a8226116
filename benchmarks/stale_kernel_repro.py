"""The full GPU suite's hang (benchmarks/NOTES.md, sixteenth session), reproduced in one process: a deterministic causal
D 128 backward kernel loaded with ops/backward_wgmma.HEAVY_FIRST off (as tests/test_backward_wgmma_heavy_first_gpu.py
leaves it in serve/autograd._loaded), then a new problem after the switch is back on. `--launch now`: the plan takes
the grid's order from the switch as it is now (the code before the fix); `--launch rendered` (the fix): from the
kernel's rendering. Prints how long the second call took, or is killed by the caller's timeout (the hang).
Usage: PYTHONPATH=$PWD timeout 60 python3 benchmarks/stale_kernel_repro.py --launch now"""
import argparse
import math
import sys
import time

import torch

from autoflash.ops import backward_gpu, backward_wgmma
from autoflash.serve import autograd, backward_plans
from autoflash.serve.autograd import attention_backward


def problem(n: int, seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v, dout = (torch.randn(2, n, 4, 128, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
                     for _ in range(4))
    scale = 1 / math.sqrt(128)
    s = (q.float() @ k.float().transpose(-1, -2)) * scale
    s = s.masked_fill(torch.ones(n, n, device="cuda", dtype=torch.bool).triu(1), -math.inf)
    lse = torch.logsumexp(s, -1)
    out = (torch.softmax(s, -1) @ v.float()).to(q.dtype)
    return q, k, v, out, lse, dout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--launch", choices=("now", "rendered"), required=True)
    args = ap.parse_args()
    if args.launch == "now":  # the code before the fix: the switch as it is at plan time
        backward_gpu.rendered = lambda kernel, name, now: now
    backward_wgmma.HEAVY_FIRST = ()
    attention_backward(*problem(17, 1), causal=True, deterministic=True)  # loads the kernel, switch off
    torch.cuda.synchronize()
    backward_wgmma.HEAVY_FIRST = (128,)  # as served; autograd._loaded keeps the kernel built off
    backward_plans.clear()
    args_512 = problem(512, 5)
    t0 = time.perf_counter()
    later = attention_backward(*args_512, causal=True, deterministic=True)
    torch.cuda.synchronize()
    took = time.perf_counter() - t0
    backward_wgmma.HEAVY_FIRST = ()
    autograd._loaded.cache_clear()
    backward_plans.clear()
    fresh = attention_backward(*args_512, causal=True, deterministic=True)
    same = all(torch.equal(a, b) for a, b in zip(later, fresh))
    print(f"launch={args.launch}: the second problem took {took * 1e3:.1f} ms; gradients bitwise those of a kernel "
          f"loaded fresh with the switch off: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
