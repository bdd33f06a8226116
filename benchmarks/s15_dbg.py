"""One eager backward of flash_bwd_mma's mma config (templates/ as they are) at bf16 D 64, b 1 h 32, N given: the
program compute-sanitizer runs in s15h.sh (whole tiles at N 16384, a tail tile at N 2000)."""
import sys

import torch

import bwd_mma_source_ab as ab

n = int(sys.argv[1])


def one_run(impls, rounds):
    impls[0].kernel()  # "new" only
    torch.cuda.synchronize()
    return {impl.name: dict(rate=1.0, spread=0.0) for impl in impls}


ab.measure = one_run
ab.row("bf16", 64, n, False, "benchmarks/ab_templates", 1)
print("done", n, flush=True)
