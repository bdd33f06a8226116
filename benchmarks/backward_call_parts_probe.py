"""Where a served backward call's time goes beyond its main kernel (issue 16's D 64 non-causal rows: 0.99-1.01x cuDNN
kernel level with TAIL_SPLIT, 0.96-0.98x per whole call). One table row's problem (bf16 D 64 N 4096 non-causal, 16k
tokens, 32 heads), timed in interleaved rounds (CUDA events, median, spread): the whole call as served
(serve/autograd.attention_backward: checks, workspace, three launches), the three launches through the cached plan
alone, each launch alone (preprocess, main kernel, dQ conversion), and SDPA's cuDNN backward. Milliseconds.

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/backward_call_parts_probe.py [--seq 4096] [--head-dim 64]
"""
import argparse
import math

import cupy
import numpy as np
import torch

from bench_backward import forward_lse, sdpa_backward, time_interleaved
from bench_backward_wgmma import key

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel, stream_handle
from autoflash.ops.backward_gpu import launch_plan
from autoflash.ops.backward_kernels import BackwardProblem
from autoflash.ops.backward_wgmma import serving_config
from autoflash.serve.autograd import attention_backward


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--head-dim", type=int, default=64)
    args = ap.parse_args()
    n, d = args.seq, args.head_dim
    b, h = max(1, 16384 // n), 2048 // d
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4))
    scale = 1 / math.sqrt(d)
    out, lse, _ = forward_lse(q, k, v, False, scale)
    cfg = serving_config(device_arch(torch.cuda.current_device())[0], key("bf16", d, False))
    plan = launch_plan(LoadedKernel(compile_kernel(cfg)), BackwardProblem(b, h, h, n, n, d, False, 0), scale)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device="cuda")
    ptrs = plan.pointers(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr(), dout.data_ptr(),
                         dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), workspace.data_ptr())
    runs = plan.launches(tuple(np.uint64(p) for p in ptrs))
    ptr = torch.cuda.current_stream().cuda_stream
    stream = stream_handle(ptr) if ptr else cupy.cuda.Stream.null

    def launch(*which):
        def run():
            for function, grid, block, smem, a in (runs[i] for i in which):
                function(grid, block, a, shared_mem=smem, stream=stream)
        return run

    fns = {"whole_call": lambda: attention_backward(q, k, v, out, lse, dout), "plan": launch(0, 1, 2),
           "pre": launch(0), "main": launch(1), "conv": launch(2)}
    fn, _ = sdpa_backward("cudnn", q, k, v, dout, False)
    if fn is not None:
        fns["cudnn"] = fn
    timed = time_interleaved(fns)
    print(f"# {torch.cuda.get_device_name()}: {cfg.name}, bf16 D {d} N {n} non-causal, batch {b}, heads {h}; "
          f"main grid {plan.main_grid}")
    print("| " + " | ".join(timed) + " |\n|" + "---|" * len(timed))
    print("| " + " | ".join(f"{ms:.4f} ms ({100 * s:.1f} %)" for ms, s in timed.values()) + " |")


if __name__ == "__main__":
    main()
