"""flash_bwd_mma before and after a template change, in one run: each row's mma config (the mma column of
bench_backward.py) compiled from templates/ ("new") and from an older copy of the template ("old", and "old2", the
same source with a comment appended: a separate compile of the same code, the A/A pair), beside SDPA's
FlashAttention-2 backward; CUDA-graph replay in interleaved rounds (graph_timing.py), TFLOP/s at 2.5x the forward's
FLOPs, the spread of the round medians; dk, dv of new and old compared bitwise, dq within 1e-2 (atomic adds).

    python benchmarks/bwd_mma_source_ab.py --old-templates DIR [--extra DIR2 ...] [--rounds 7] [--head-dims 64,128]
        [--seqs 4096,16384]

DIR holds the old flash_bwd_mma.cu.j2 (it is searched before templates/, which supplies the shared headers)."""
from __future__ import annotations

import argparse
import math
import os

import torch

from bench_backward import forward_lse, mma_config
from graph_timing import Impl, measure

from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel
from autoflash.kernels.registry import TEMPLATES
from autoflash.kernels.render import environment
from autoflash.ops.backward_gpu import launch_plan
from autoflash.ops.backward_kernels import BackwardProblem

TOKENS = 16384  # batch x N, 2048 / D heads (bench_backward.py's rows)


def sources(cfg, old_dir: str, extra_dirs=()) -> dict:
    """label -> CUDA source: new (templates/), old, old2 (old + a comment: its own compile), and each extra
    directory's template (labelled by the directory's name)."""
    from autoflash.kernels.render import render

    template = TEMPLATES[cfg.template]
    rendered = {d: environment(d).get_template(template.template_file).render(**template.values(cfg))
                for d in (old_dir,) + tuple(extra_dirs)}
    old = rendered[old_dir]
    return {"new": render(cfg), "old": old, "old2": old + "\n// the A/A copy\n",
            **{os.path.basename(d.rstrip("/")): rendered[d] for d in extra_dirs}}


def current_stream():
    """torch's current stream for CuPy's launcher, looked up at each call (a graph capture runs on a side stream)."""
    import cupy

    return cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)


def fa2_backward(q, k, v, dout, causal: bool, scale: float):
    """SDPA's FlashAttention-2 backward as one capturable aten call on a saved forward (autograd.grad is not
    capturable in a graph)."""
    fwd = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, scale=scale)
    out, lse, cum_q, cum_k, max_q, max_k, seed, offset = fwd[:8]
    return lambda: torch.ops.aten._scaled_dot_product_flash_attention_backward(
        dout, q, k, v, out, lse, cum_q, cum_k, max_q, max_k, 0.0, causal, seed, offset, scale=scale)


def row_inputs(dtype: str, d: int, n: int, causal: bool):
    """A row's random q, k, v, dO (TOKENS tokens, 2048 / d heads), the forward's O and LSE, the scale and the
    BackwardProblem."""
    b, h = TOKENS // n, 2048 // d
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    g = torch.Generator(device="cuda").manual_seed(n + d)
    q, k, v, dout = (torch.randn(b, h, n, d, device="cuda", generator=g).to(tdt) for _ in range(4))
    scale = 1 / math.sqrt(d)
    out, lse, _ = forward_lse(q, k, v, causal, scale)
    return q, k, v, dout, out, lse, scale, BackwardProblem(b, h, h, n, n, d, causal)


def plan_impl(name: str, kernel, p, scale: float, tensors: tuple) -> tuple[Impl, tuple]:
    """A loaded backward kernel's launches (preprocess, main kernel, dQ conversion) on q, k, v, out, lse, dout
    (tensors) into fresh dq, dk, dv and workspace, as an Impl of 3 calls a graph; and those (dq, dk, dv), which the
    Impl keeps alive."""
    plan = launch_plan(kernel, p, scale)
    outputs = tuple(torch.empty_like(x) for x in tensors[:3])
    workspace = torch.empty(plan.workspace_bytes, dtype=torch.uint8, device="cuda")
    ptrs = [x.data_ptr() for x in tensors + outputs + (workspace,)]
    impl = Impl(name, lambda: (outputs, workspace, plan(*ptrs, current_stream()))[2], calls=3, work=p.flops())
    return impl, outputs


def row(dtype: str, d: int, n: int, causal: bool, old_dir: str, rounds: int, extra_dirs=()) -> dict:
    arch = device_arch(torch.cuda.current_device())[0]
    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False)
    cfg = mma_config(arch, key, n)[0]
    kernels = {label: LoadedKernel(compile_kernel(cfg, source=src))
               for label, src in sources(cfg, old_dir, extra_dirs).items()}
    q, k, v, dout, out, lse, scale, p = row_inputs(dtype, d, n, causal)
    grads, impls = {}, []
    for label, kernel in kernels.items():
        impl, grads[label] = plan_impl(label, kernel, p, scale, (q, k, v, out, lse, dout))
        impls.append(impl)
    impls.append(Impl("fa2", fa2_backward(q, k, v, dout, causal, scale), calls=3, work=p.flops()))
    res = measure(impls, rounds)
    for impl in impls[:len(kernels)]:
        impl.kernel()
    torch.cuda.synchronize()
    # dk, dv bitwise (each block writes its own); dq within rounding (its fp32 adds arrive in any order)
    same = all(torch.equal(a, c) for a, c in zip(grads["new"][1:], grads["old"][1:]))
    same = same and float((grads["new"][0].float() - grads["old"][0].float()).abs().max()) < 1e-2
    return dict(cfg=cfg.name, res=res, bitwise=same)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-templates", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtypes", default="bf16")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--seqs", default="4096,16384")
    ap.add_argument("--causal", default="no,yes", help="no, yes or both (comma-separated)")
    ap.add_argument("--no-header", action="store_true")
    ap.add_argument("--extra", action="append", default=[], help="another template directory (repeatable): a column")
    args = ap.parse_args()
    if not args.no_header:
        print(f"{'row':28} {'new':>16} {'old':>16} {'old2':>16} {'fa2':>6} {'new/old':>8} {'old2/old':>8} "
              f"{'new/fa2':>8} {'old/fa2':>8} same", flush=True)
    for dtype in args.dtypes.split(","):
        for d in (int(x) for x in args.head_dims.split(",")):
            for causal in (c == "yes" for c in args.causal.split(",")):
                for n in (int(x) for x in args.seqs.split(",")):
                    r = row(dtype, d, n, causal, args.old_templates, args.rounds, args.extra)
                    res = r["res"]
                    rate = {k: res[k]["rate"] / 1e12 for k in res if res[k].get("rate")}
                    cell = {k: f"{rate[k]:.0f} ({res[k]['spread']:.1%})" for k in rate}
                    label = f"{dtype} d{d} n{n} {'causal' if causal else 'non-causal'}"
                    print(f"{label:28} {cell['new']:>16} {cell['old']:>16} {cell['old2']:>16} {rate.get('fa2', 0):6.0f} "
                          f"{rate['new'] / rate['old']:8.3f} {rate['old2'] / rate['old']:8.3f} "
                          f"{rate['new'] / rate.get('fa2', math.nan):8.3f} {rate['old'] / rate.get('fa2', math.nan):8.3f} "
                          f"{r['bitwise']}  {r['cfg']}"
                          + "".join(f"  {os.path.basename(x.rstrip('/'))} {rate[os.path.basename(x.rstrip('/'))]:.0f}"
                                    f" ({rate[os.path.basename(x.rstrip('/'))] / rate['old']:.3f}x old)"
                                    for x in args.extra), flush=True)


if __name__ == "__main__":
    main()
