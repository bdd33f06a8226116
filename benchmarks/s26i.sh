#!/bin/bash
# Twenty-sixth session (nvidia-h200): s26h's Nsight Compute comparison on D 128 causal N 16384 and, as a control, D 64
# causal N 4096 (a row above cuDNN in every graph-replay reading), bf16, one launch each.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for row in 128:16384 64:4096; do
  d=${row%%:*}; n=${row##*:}; f=$OUT/ncu_bwd_causal_d${d}_n${n}_h200_${D}_s26i
  timeout 120 "$ncu" --clock-control none --profile-from-start off --section SpeedOfLight --section WarpStateStats \
    --section SchedulerStats --section LaunchStats -f -o /tmp/ncu_$d \
    python3 benchmarks/bench_backward.py --profile --causal --head-dims $d --seqs $n --sdpa cudnn > $f.log 2>&1
  "$ncu" --import /tmp/ncu_$d.ncu-rep --page raw --csv > /tmp/ncu_$d.csv 2>> $f.log
  python3 benchmarks/ncu_summary.py /tmp/ncu_$d.csv > $f.txt 2>&1
  grep -E "^===|gpu__time_duration|tensor_cycles_active.avg.pct_of_peak_sustained_elapsed|issue_active" $f.txt | cut -c1-130
done
