#!/bin/bash
# Nsight Compute over the H200 forward rows furthest behind cuDNN (wgmma_ab.py --rows weak: bf16 D 64 causal N 1k/4k,
# D 256 causal N 1k) and cuDNN's kernels for them: sections per kernel, then warp-stall samples per SASS instruction of
# ours. One device call (carry .whl; ~2 min): run(carry=[".whl"], command="bash benchmarks/ncu_fwd_weak.sh").
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl; export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1; mkdir -p /tmp/n; NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 150 $NCU --clock-control none --profile-from-start off --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis -f -o /tmp/n/sol python3 benchmarks/wgmma_ab.py --profile --rows weak > /tmp/n/sol.log 2>&1
$NCU --import /tmp/n/sol.ncu-rep --page raw --csv > /tmp/n/sol.csv 2>>/tmp/n/sol.log; python3 benchmarks/ncu_summary.py /tmp/n/sol.csv > /tmp/n/sol.txt 2>&1
timeout 120 $NCU --clock-control none --profile-from-start off --kernel-name regex:flash_fwd_wgmma --section SourceCounters --section WarpStateStats --import-source no -f -o /tmp/n/src python3 benchmarks/wgmma_ab.py --profile --rows weak > /tmp/n/src.log 2>&1
$NCU --import /tmp/n/src.ncu-rep --page source --csv --print-source sass > /tmp/n/src.csv 2>>/tmp/n/src.log; python3 benchmarks/ncu_summary.py --source /tmp/n/src.csv > /tmp/n/src.txt 2>&1; gzip -f /tmp/n/src.csv
tar czf $OUT/ncu_fwd.tgz -C /tmp/n sol.txt sol.log src.txt src.log src.csv.gz; grep -E "^===|gpu__time|tensor_type.*avg.pct|issue_active|warps_eligible|stalls" /tmp/n/sol.txt | cut -c1-180 | head -40
