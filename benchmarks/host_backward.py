"""Host cost of one attention_backward() call (issue 18 item 3, for the backward): a tiny problem (B=1, H=2,
N=128, D=64, bf16, causal: a few us of GPU work) called 500 times in a row, wall clock over the loop, in 7
interleaved rounds beside the same kernel's cached launch plan called directly (the floor: launches only) and
SDPA's cuDNN backward (torch.autograd.grad of a saved forward); then cProfile's top functions of attention_backward.

    PYTHONPATH=$PWD:$PWD/benchmarks python3 benchmarks/host_backward.py
"""
import cProfile
import math
import pstats
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from host_overhead import host_rounds
from bench_backward_wgmma import pinned

from autoflash.serve.autograd import _served_config, attention_backward


def main() -> int:
    torch.manual_seed(0)
    b, h, n, d = 1, 2, 128, 64
    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    import autoflash

    out, lse = autoflash.attention(q, k, v, causal=True, return_lse=True)
    key = dict(dtype="bf16", head_dim=d, causal=True, deterministic=False, window=False, softcap=False, sinks=False,
               alibi=False)
    cfg = _served_config(torch.cuda.current_device(), key, n, 0)
    plan_only = pinned(cfg, "", q, k, v, out, lse, dout, True)
    qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
    fns = {"attention_backward": lambda: attention_backward(q, k, v, out, lse, dout, causal=True),
           "cached plan only": plan_only,
           "sdpa cudnn (autograd.grad)": lambda: torch.autograd.grad(o, (qq, kk, vv), dout, retain_graph=True)}
    for fn in fns.values():
        fn()
    torch.cuda.synchronize()
    rows = host_rounds(fns, calls=500, rounds=7)
    print(f"# {torch.cuda.get_device_name()}; host us per call (median, min..max of 7 rounds), served {cfg.name}")
    for name, r in rows.items():
        print(f"  {name:30s} {r['median']:7.1f} us  ({r['min']:.1f}..{r['max']:.1f})")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(500):
        attention_backward(q, k, v, out, lse, dout, causal=True)
    prof.disable()
    torch.cuda.synchronize()
    pstats.Stats(prof).sort_stats("tottime").print_stats(22)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
