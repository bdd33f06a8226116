#!/bin/bash
# One short device call (nvidia-h200, carry .whl): Nsight Compute over benchmarks/profile_softcap.py (attention()'s
# plain and softcap 30 kernels, bf16 N 4096 non-causal, D 128 and 64): pipe use (XU = the SFU's MUFU ops, FMA, ALU),
# issue activity, eligible warps and stall reasons, summarised by benchmarks/ncu_summary.py into $OUT/ncu_softcap.txt.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afc
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 150 "$ncu" --clock-control none --profile-from-start off --section SpeedOfLight --section WarpStateStats \
    --section SchedulerStats --section ComputeWorkloadAnalysis -f -o /tmp/ncu_softcap \
    python3 benchmarks/profile_softcap.py > "$OUT/ncu_softcap.log" 2>&1
"$ncu" --import /tmp/ncu_softcap.ncu-rep --page raw --csv > /tmp/ncu_softcap.csv 2>> "$OUT/ncu_softcap.log"
python3 benchmarks/ncu_summary.py /tmp/ncu_softcap.csv > "$OUT/ncu_softcap.txt" 2>&1
tail -5 "$OUT/ncu_softcap.log"; cat "$OUT/ncu_softcap.txt" | head -120
