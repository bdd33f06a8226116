import sys, torch
sys.argv = ["x", "--old-templates", "benchmarks/ab_templates"]
import bwd_mma_source_ab as ab
from graph_timing import Impl
orig_measure = ab.measure
def eager_measure(impls, rounds):
    for impl in impls:
        try:
            impl.kernel(); torch.cuda.synchronize(); print("eager ok", impl.name, flush=True)
        except Exception as e:
            print("eager FAIL", impl.name, str(e)[:200], flush=True); raise
    return {impl.name: dict(rate=1.0, spread=0.0) for impl in impls}
ab.measure = eager_measure
r = ab.row("bf16", 64, 16384, False, "benchmarks/ab_templates", 1)
print(r["bitwise"])
