"""One launch each of attention()'s served softcap kernel and the plain kernel of the same shape (bf16, B 8, H 16,
N 4096, non-causal, D 128 and 64: bench_variants.py's rows), between cudaProfilerStart/Stop after a warm-up, for
Nsight Compute (issue 17: is softcap bound by the SFU (XU pipe), by issue slots, or by latency?).

    ncu --profile-from-start off --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis \
        -o /tmp/softcap python3 benchmarks/profile_softcap.py
    python3 benchmarks/ncu_summary.py <(ncu --import /tmp/softcap.ncu-rep --page raw --csv)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import autoflash  # noqa: E402


def main() -> None:
    calls = []
    for d in (128, 64):
        g = torch.Generator(device="cuda").manual_seed(d)
        q, k, v = (torch.randn(8, 16, 4096, d, device="cuda", generator=g, dtype=torch.bfloat16) for _ in range(3))
        calls += [lambda q=q, k=k, v=v: autoflash.attention(q, k, v),
                  lambda q=q, k=k, v=v: autoflash.attention(q, k, v, softcap=30.0)]
    for call in calls:  # compile, plan and warm up outside the profiled range
        call(), call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for call in calls:
        call()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    print("profiled: plain / softcap 30 at D 128, then D 64 (bf16, B 8, H 16, N 4096, non-causal)")


if __name__ == "__main__":
    main()
