"""Issue 2's bar: the simt kernel vs the seed's naive kernel vs PyTorch SDPA's fp32 path.

fp32, D = 64, N = 4096, one run on one GPU:
    PYTHONPATH=$PWD python3 benchmarks/bench_simt.py
"""
import sys
from pathlib import Path

import cupy
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import sdpa_runner, tflops, time_ms  # noqa: E402
from seed_naive import run_naive  # noqa: E402

import autoflash  # noqa: E402
import autoflash.serve.api  # noqa: E402
import autoflash.kernels.device  # noqa: E402
from autoflash.ops.reference import compare, reference_attention  # noqa: E402
from autoflash.kernels.registry import TEMPLATES as VARIANTS  # noqa: E402

B, H, N, D = 4, 16, 4096, 64


def main():
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, device="cuda") for _ in range(3))
    cq, ck, cv = (cupy.asarray(t) for t in (q, k, v))
    rows = []
    # correctness of each on a slice (float64 reference on the GPU)
    ref, _ = reference_attention(cq[:1, :2], ck[:1, :2], cv[:1, :2], causal=False)
    variant = VARIANTS["flash_fwd_simt"]
    arch = autoflash.kernels.device.device_arch(0)[0]
    configs = [variant.default(arch, {"dtype": "fp32", "head_dim": D, "causal": False})]
    # the sweep: the valid configs with at least 4 warps and 32x32 tiles (smaller ones cannot fill the SMs)
    configs += [c for c in variant.space(arch, "fp32", D, False)
                if not c.problems() and c not in configs and c.warps >= 4 and min(c.block_m, c.block_n) >= 32]
    results = []
    for cfg in configs:
        run = lambda cfg=cfg: autoflash.attention(q, k, v, config=cfg)  # noqa: E731
        check = compare(cupy.asarray(run()[:1, :2]), ref, "fp32")
        ms = time_ms(run, reps=20, max_seconds=2)
        results.append((tflops(B, H, N, N, D, False, ms), cfg, ms, check))
    results.sort(key=lambda r: -r[0])
    for tf, cfg, ms, check in results[:5]:
        tag = "simt (default)" if cfg == configs[0] else "simt"
        rows.append((f"{tag} {cfg.name}", ms, tf, check.describe()))
    default = next(r for r in results if r[1] == configs[0])
    rows.append((f"simt (default) {configs[0].name}", default[2], default[0], default[3].describe()))
    naive_check = compare(run_naive(cq[:1, :2].copy(), ck[:1, :2].copy(), cv[:1, :2].copy()), ref, "fp32")
    ms = time_ms(lambda: run_naive(cq, ck, cv), warmup=1, reps=3, max_seconds=10)
    rows.append(("seed naive (fp32, Br=Bc=32)", ms, tflops(B, H, N, N, D, False, ms), naive_check.describe()))
    torch.backends.cuda.matmul.allow_tf32 = False
    for backend in ("sdpa_efficient", "sdpa_math"):
        run = sdpa_runner(backend, q, k, v, False)
        if run is None:
            rows.append((backend, float("nan"), float("nan"), "not available for fp32"))
            continue
        ms = time_ms(run)
        rows.append((backend, ms, tflops(B, H, N, N, D, False, ms), ""))
    ms = time_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    rows.append(("sdpa default (fp32)", ms, tflops(B, H, N, N, D, False, ms), ""))
    print(f"\n{torch.cuda.get_device_name()}: fp32 B={B} H={H} N={N} D={D} non-causal, median of CUDA-event timings")
    print(f"{'kernel':<62} {'ms':>9} {'TFLOP/s':>8}  check")
    for name, ms, tf, note in rows:
        print(f"{name:<62} {ms:9.3f} {tf:8.2f}  {note}")
    best = results[0][0]
    naive = next(r for r in rows if r[0].startswith("seed"))[2]
    sdpa = next(r for r in rows if r[0].startswith("sdpa default"))[2]
    print(f"best simt / naive = {best / naive:.0f}x ; default simt / naive = {default[0] / naive:.0f}x ; "
          f"best simt / sdpa default fp32 = {best / sdpa:.2f}x ; default / sdpa = {default[0] / sdpa:.2f}x")


if __name__ == "__main__":
    main()
