"""Issue 16's backward bar at kernel level: per row, the served backward's launches (preprocess, main kernel, dQ
conversion, as attention_backward launches them), flash_bwd_mma's (the mma bar's column), SDPA's cuDNN backward
(torch.autograd.grad on a saved cuDNN forward) and SDPA's FlashAttention-2 backward (its aten op), each captured in a
CUDA graph and replayed in interleaved rounds (graph_timing.py): no host time in any of them, the spread of the round
medians given. TFLOP/s at 2.5x the forward's FLOPs; rows as bench_backward.py's (16k tokens, 2048 / D heads).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_backward_graph.py [--rounds 7] [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096,16384] [--build-order shuffled|fixed|served-last]

The H200 runs at its power cap, so a column's rate depends on the kernel before it (graph_timing shuffles the replay
order every round) and on where its buffers sit (the columns are built in a seeded shuffled order per row).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import random

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench_backward import full_key, mma_config, served_config
from bwd_mma_source_ab import fa2_backward, plan_impl, row_inputs
from graph_timing import Impl, measure

from autoflash.kernels.archs import build_arch
from autoflash.kernels.compile import compile_kernel
from autoflash.kernels.device import device_arch
from autoflash.kernels.loaded import LoadedKernel
from autoflash.ops import backward_mma_switches as MMA_MODULE
from autoflash.ops import backward_wgmma as WGMMA_MODULE
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA



def config_impl(name: str, cfg, p, scale: float, tensors: tuple) -> Impl:
    """cfg's three launches on q, k, v, out, lse, dout (tensors) into fresh dq, dk, dv and workspace."""
    return plan_impl(name, LoadedKernel(compile_kernel(cfg)), p, scale, tensors)[0]


@contextlib.contextmanager
def switched(names: list[str]):
    """The ops/backward_wgmma switches named (MMA.NAME: ops/backward_mma_switches') set inside the block (NAME on, -NAME
    off; a switch holding head dims: all of them, or none; NAME=N: the integer N), set back after."""
    names = [s for s in names if s]
    saved = {}
    try:
        for s in names:
            spec, _, value = s.lstrip("-").partition("=")
            module, name = (MMA_MODULE, spec[4:]) if spec.startswith("MMA.") else (WGMMA_MODULE, spec)
            saved[module, name] = old = getattr(module, name)
            on = not s.startswith("-")
            setattr(module, name, int(value) if value else ((64, 128, 256) if on else ()) if isinstance(old, tuple)
                    else on)
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)


def alt_impl(name: str, tile: str, switches: str, arch: str, key: dict, n: int, p, scale: float,
             tensors: tuple) -> Impl:
    """A flash_bwd_wgmma tile BMxBNxWARPSxSTAGES[xDQ_VIA_PRODUCER] (or "mma": the mma column's config), compiled
    with the switches named in switches ("A+B") on (-A: off; MMA.A: ops/backward_mma_switches'), then set back."""
    if tile == "mma":
        cfg = mma_config(arch, key, n)[0]
    else:
        bm, bn, w, st, dq = ([int(x) for x in tile.split("x")] + [-1])[:5]
        cfg = WGMMA.config(build_arch(WGMMA.archs, arch), full_key(key), block_m=bm, block_n=bn, warps=w, stages=st,
                           warps_q=1, dq_via_producer=dq)
    with switched(switches.split("+")):
        return config_impl(name, cfg, p, scale, tensors)


class StreamImpl(Impl):
    """An Impl captured on a given stream: autograd runs a backward on its forward's stream, so the graph must
    capture on that one (the default stream cannot be captured)."""

    def __init__(self, name: str, kernel, stream, **kw):
        super().__init__(name, kernel, **kw)
        self.stream = stream

    def capture(self) -> None:
        self.kernel()
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):
            for _ in range(self.calls):
                self.kernel()
        self.graph.replay()
        torch.cuda.synchronize()


def cudnn_impl(q, k, v, dout, causal: bool, work: float) -> Impl:
    """SDPA's cuDNN backward: autograd.grad on a cuDNN forward kept alive, run on its own stream (where autograd then
    runs the backward, and the graph captures it); n/a where cuDNN refuses the forward."""
    qq, kk, vv = (x.detach().clone().requires_grad_() for x in (q, k, v))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream), sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
        torch.cuda.synchronize()
    except RuntimeError as exc:
        impl = Impl("cudnn", lambda: None)
        impl.na = str(exc).splitlines()[0][:120]
        return impl
    return StreamImpl("cudnn", lambda: torch.autograd.grad(out, (qq, kk, vv), dout, retain_graph=True), stream,
                      calls=3, work=work)


def row_impls(arch: str, key: dict, n: int, alts: list, order: str) -> list[Impl]:
    """A row's columns (served, mma, cudnn, fa2, alt1..), built (compiled, their outputs and workspace allocated) in
    `order`: "fixed" (that order), "served-last", or "shuffled" (seeded by the row). The first-built column's buffers
    sit right after the inputs and read a few percent low at D 128 (s21c, s21f), so a fixed order biases one column."""
    q, k, v, dout, out, lse, scale, p = row_inputs(key["dtype"], key["head_dim"], n, key["causal"])
    tensors = (q, k, v, out, lse, dout)
    builders = {
        "served": lambda: config_impl("served", served_config(arch, key, n), p, scale, tensors),
        "mma": lambda: config_impl("mma", mma_config(arch, key, n)[0], p, scale, tensors),
        "cudnn": lambda: cudnn_impl(q, k, v, dout, key["causal"], p.flops()),
        "fa2": lambda: Impl("fa2", fa2_backward(q, k, v, dout, key["causal"], scale), calls=3, work=p.flops()),
    }
    for i, (tile, switches) in enumerate(alts):
        builders[f"alt{i + 1}"] = functools.partial(alt_impl, f"alt{i + 1}", tile, switches, arch, key, n, p, scale,
                                                    tensors)
    names = list(builders)
    if order == "served-last":
        names = names[1:] + names[:1]
    elif order == "shuffled":
        random.Random(f"{key} {n}").shuffle(names)
    return [builders[name]() for name in names]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dtypes", default="bf16,fp16")
    ap.add_argument("--head-dims", default="64,128")
    ap.add_argument("--seqs", default="4096,16384")
    ap.add_argument("--causal", default="false,true")
    ap.add_argument("--alt", default="", help="BMxBNxWARPSxSTAGES[xDQ][:SWITCH+SWITCH], comma-separated: "
                    "flash_bwd_wgmma tiles (DQ: dq_via_producer; mma: the mma column's config) timed as columns alt1, "
                    "alt2, ..., each compiled with the named ops/backward_wgmma switches on (-SWITCH: off; "
                    "MMA.SWITCH: ops/backward_mma_switches')")
    ap.add_argument("--one-consumer", action="store_true",
                    help="ops/backward_wgmma.ONE_CONSUMER on (e.g. --alt 64x64x8x2)")
    ap.add_argument("--build-order", choices=("shuffled", "fixed", "served-last"), default="shuffled",
                    help="the order a row's columns are built in (row_impls: the first-built reads low)")
    ap.add_argument("--served-last", action="store_true", help="--build-order served-last (s21c, s21f)")
    args = ap.parse_args()
    order = "served-last" if args.served_last else args.build_order
    WGMMA_MODULE.ONE_CONSUMER = args.one_consumer or WGMMA_MODULE.ONE_CONSUMER
    arch = device_arch(torch.cuda.current_device())[0]
    alts = [(a.split(":") + [""])[:2] for a in args.alt.split(",")] if args.alt else []
    alt_names = tuple(f"alt{i + 1}" for i in range(len(alts)))
    names = ("served", "mma", "cudnn", "fa2") + alt_names
    for name, (tile, switches) in zip(alt_names, alts):
        print(f"# {name}: {tile}" + (f" with {switches}" if switches else ""), flush=True)
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; backward TFLOP/s (2.5x forward FLOPs), "
          f"CUDA-graph replay, {args.rounds} rounds, columns built {order}; (spread of the round medians)", flush=True)
    header = "| dtype | D | N | causal | " + " | ".join(names) + " | served/cudnn | mma/fa2 |"
    # an alt is compared with the column it varies
    base = {a: "mma" if tile == "mma" else "served" for a, (tile, _) in zip(alt_names, alts)}
    header += "".join(f" {a}/{base[a]} |" for a in alt_names)
    print(header + "\n|" + "---|" * (10 + 2 * len(alts)), flush=True)
    for dtype in args.dtypes.split(","):
        for d in (int(x) for x in args.head_dims.split(",")):
            for n in (int(x) for x in args.seqs.split(",")):
                for causal in (x == "true" for x in args.causal.split(",")):
                    key = dict(dtype=dtype, head_dim=d, causal=causal, deterministic=False)
                    impls = row_impls(arch, key, n, alts, order)
                    res = measure(impls, args.rounds)
                    rate = {x: r["rate"] / 1e12 for x, r in res.items() if r.get("rate")}
                    cell = lambda x: f"{rate[x]:.0f} ({res[x]['spread']:.1%})" if x in rate else "n/a"  # noqa: E731
                    ratio = lambda a, c: f"{rate[a] / rate[c]:.3f}" if a in rate and c in rate else "n/a"  # noqa: E731
                    print(f"| {dtype} | {d} | {n} | {causal} | " + " | ".join(cell(x) for x in names)
                          + f" | {ratio('served', 'cudnn')} | {ratio('mma', 'fa2')} |"
                          + "".join(f" {ratio(a, base[a])} |" for a in alt_names), flush=True)
                    del impls
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
