"""flash_bwd_wgmma's DQ_STAGE_ROTATE (ops/backward_wgmma.py, a switch, 0 = off: with dq_via_producer=2 the
consumers' float2 stores to the unpadded dQ staging tile rotated per lane by R rounds of selects: "tile_rot1" 4
wavefronts a store, "tile_rot2" 2, conflict-free) timed on the producer tile (bm64 bn128 w12 s2, the served
default's tiles) against the same tile with the plain unpadded stores ("tile": dq_via_producer=2, 8 wavefronts, D
64's served kernel) and with the padded per-row reductions ("rows": 1, D 128's served kernel),
beside SDPA's cuDNN backward, in one run: bf16/fp16, D 64/128, causal and not, N 4096 by default (B = 16384 / N,
H = 2048 / D); TFLOP/s at 2.5x the forward's FLOPs; CUDA events, interleaved rounds, median, spread = range of the
round medians (bench_backward.time_interleaved); each kernel's largest relative gradient error against SDPA's flash
backward (the float64 checks: tests/test_backward_wgmma_bd_gpu.py).

    PYTHONPATH=$PWD:$PWD/benchmarks python benchmarks/bench_bd_rotate.py [--dtypes bf16,fp16]
        [--head-dims 64,128] [--seqs 4096] [--precompile]
"""
import sys

import dq_ab
from bench_backward_wgmma import key

from autoflash.kernels.archs import build_arch
from autoflash.ops.backward_wgmma import TEMPLATE as WGMMA

NAMES = ["rows", "tile", "tile_rot1", "tile_rot2", "sdpa_cudnn"]
PAIRS = (("tile_rot2", "tile"), ("tile_rot1", "tile"), ("tile_rot2", "rows"), ("tile", "rows"),
         ("tile_rot2", "sdpa_cudnn"), ("tile", "sdpa_cudnn"), ("rows", "sdpa_cudnn"))


def configs(arch, dtype, d, causal):
    """name -> (config, switches): the producer tile with dq_via_producer 1 and 2 (spelled -1 where the rule gives
    that value), and 2 with DQ_STAGE_ROTATE 1 and 2."""
    c = WGMMA.config(build_arch(WGMMA.archs, arch), key(dtype, d, causal), block_m=64, block_n=128, warps=12,
                     stages=2, warps_q=1)
    out = {}
    for name, mode, rotate in (("rows", 1, 0), ("tile", 2, 0), ("tile_rot1", 2, 1), ("tile_rot2", 2, 2)):
        x = c if WGMMA.dq_mode(c) == mode else c.replace(dq_via_producer=mode)
        with dq_ab.switched({"DQ_STAGE_ROTATE": rotate}):
            assert not x.problems() and WGMMA.rotates_dq_stores(x) == rotate, x.name
        out[name] = (x, {"DQ_STAGE_ROTATE": rotate})
    return out


if __name__ == "__main__":
    sys.exit(dq_ab.main(__doc__, configs, NAMES, PAIRS, ("rows", "tile", "tile_rot1", "tile_rot2")))
