import sys, torch
import bwd_mma_source_ab as ab
from graph_timing import Impl
def careful_measure(impls, rounds):
    for impl in impls:
        impl.capture()
        try:
            impl.graph.replay(); torch.cuda.synchronize(); print("graph ok", impl.name, flush=True)
        except Exception as e:
            print("graph FAIL", impl.name, str(e)[:200], flush=True); raise
    return {impl.name: dict(rate=1.0, spread=0.0) for impl in impls}
ab.measure = careful_measure
for n in (4096, 16384):
    r = ab.row("bf16", 64, n, False, "benchmarks/ab_templates", 1)
    print(n, r["bitwise"], flush=True)
