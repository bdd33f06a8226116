"""Host cost of one attention_backward() call (issue 18 item 3, for the backward): a tiny problem (B=1, H=2,
N=128, D=64, bf16, causal: a few us of GPU work) called 500 times in a row, wall clock over the loop, in 7
interleaved rounds: attention_backward (served by its call plan, serve/backward_plans.py), the same kernel's
launch plan called directly (the floor: launches only; CuPy's launcher and the packed sequence), SDPA's cuDNN
backward (torch.autograd.grad of a saved forward), and a whole differentiable call (autoflash.attention() on
tensors that require grad, then torch.autograd.grad; the drop-in autoflash.torch.scaled_dot_product_attention
the same; each also with its training plan cleared before every call: the checked path, as before
serve/training_plans.py, plus the few us of keeping the plan again) beside SDPA cuDNN's. Then cProfile's top
functions of attention_backward and of attention() fwd+bwd.

    PYTHONPATH=$PWD:$PWD/benchmarks python3 benchmarks/host_backward.py
    python3 benchmarks/host_backward.py --precompile   # compile its kernels into the disk cache (ab_run.sh)
"""
import contextlib
import cProfile
import pstats
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from host_overhead import host_rounds
from bench_backward_wgmma import pinned

from autoflash.serve import backward_plans, training_plans
from autoflash.serve.autograd import _served_config, attention_backward

B, H, N, D = 1, 2, 128, 64


def key(deterministic=False):
    return dict(dtype="bf16", head_dim=D, causal=True, deterministic=deterministic, window=False, softcap=False,
                sinks=False, alibi=False)


def precompile() -> int:
    """The backward configs this script and tests/test_backward_host_plans_gpu.py run (served, and deterministic),
    and the forward's, compiled in parallel processes into the disk cache."""
    from concurrent.futures import ProcessPoolExecutor

    from autoflash.kernels.compile import compile_kernel
    from autoflash.serve.api import choose_config
    from autoflash.kernels.device import device_arch

    arch, name = device_arch(0)
    cfgs = [_served_config(0, key(det), N, 0) for det in (False, True)]
    cfgs.append(choose_config(arch, name, "bf16", D, True, N, dict(window=False, softcap=False, sinks=False,
                                                                    alibi=False)))
    with ProcessPoolExecutor() as pool:
        for cfg, c in zip(cfgs, pool.map(compile_kernel, cfgs)):
            print(f"  compiled {cfg.name}: {c.report.registers} registers, {c.report.spills} B spilled", flush=True)
    return 0


def main() -> int:
    if "--precompile" in sys.argv:
        return precompile()
    torch.manual_seed(0)
    q, k, v, dout = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    import autoflash
    import autoflash.torch

    out, lse = autoflash.attention(q, k, v, causal=True, return_lse=True)
    cfg = _served_config(torch.cuda.current_device(), key(), N, 0)
    plan_only = pinned(cfg, "", q, k, v, out, lse, dout, True)
    attention_backward(q, k, v, out, lse, dout, causal=True)  # keeps the plan
    (entry,) = backward_plans._plans.values()
    grads = plan_only()
    workspace = torch.empty(entry.workspace_shape, dtype=torch.uint8, device="cuda")
    pointers = entry.launch.pointers(*(t.data_ptr() for t in (q, k, v, out, lse, dout) + grads),
                                     workspace.data_ptr())
    stream = torch.cuda.current_stream().cuda_stream
    qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)

    def ours_step():
        return torch.autograd.grad(autoflash.attention(qq, kk, vv, causal=True), (qq, kk, vv), dout)

    def dropin_step():
        return torch.autograd.grad(autoflash.torch.scaled_dot_product_attention(qq, kk, vv, is_causal=True),
                                   (qq, kk, vv), dout)

    def sdpa_step():
        return torch.autograd.grad(F.scaled_dot_product_attention(qq, kk, vv, is_causal=True), (qq, kk, vv), dout)

    cudnn = lambda: sdpa_kernel(SDPBackend.CUDNN_ATTENTION)  # noqa: E731  (set once around each round's loop)
    fns = {"attention_backward": lambda: attention_backward(q, k, v, out, lse, dout, causal=True),
           "launch plan only, CuPy launcher": plan_only,
           "launch plan only, packed": lambda: entry.packed(pointers, stream),
           "sdpa cudnn backward (autograd.grad)": lambda: torch.autograd.grad(o, (qq, kk, vv), dout, retain_graph=True),
           "attention() fwd+bwd": ours_step,
           "attention() fwd+bwd, training plan cleared each call": lambda: (training_plans.clear(), ours_step()),
           "drop-in sdpa fwd+bwd": dropin_step,
           "drop-in fwd+bwd, training plan cleared each call": lambda: (training_plans.clear(), dropin_step()),
           "sdpa cudnn fwd+bwd": (sdpa_step, cudnn)}
    for fn, context in (f if isinstance(f, tuple) else (f, contextlib.nullcontext) for f in fns.values()):
        with context():
            fn()
    torch.cuda.synchronize()
    rows = host_rounds(fns, calls=500, rounds=7)
    print(f"# {torch.cuda.get_device_name()}; host us per call (median, min..max of 7 rounds of 500 calls), "
          f"served {cfg.name}; plans kept: {len(backward_plans._plans)} backward, "
          f"{len(training_plans._plans)} training")
    print("| path | us per call | min..max |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['median']:.1f} | {r['min']:.1f}..{r['max']:.1f} |")
    for what, fn in (("attention_backward", lambda: attention_backward(q, k, v, out, lse, dout, causal=True)),
                     ("attention() fwd+bwd", ours_step)):
        print(f"# cProfile: {what}, 500 calls")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(500):
            fn()
        prof.disable()
        torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
