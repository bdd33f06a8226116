#!/bin/bash
# Twenty-seventh session (nvidia-h200): Nsight Compute of the served D 64 causal N 16384 backward (now CAUSAL_WALK's
# walked tile) beside cuDNN's, bf16, one launch each, clocks as s26h (none) and locked at base (s26h's open question).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
M=sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__warps_active.avg.pct_of_peak_sustained_active
M=$M,launch__grid_size,launch__block_size,launch__registers_per_thread,launch__occupancy_limit_shared_mem
M=$M,sm__cycles_active.avg,sm__cycles_elapsed.avg,dram__throughput.avg.pct_of_peak_sustained_elapsed
timeout 120 "$ncu" --clock-control none --profile-from-start off --section SpeedOfLight --section WarpStateStats \
  --section SchedulerStats --section LaunchStats --section Occupancy --metrics $M -f -o /tmp/ncu_c64_none \
  python3 benchmarks/bench_backward.py --profile --causal --head-dims 64 --seqs 16384 --sdpa cudnn \
  > $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_none_s27f.log 2>&1
echo "ncu rc $?"; tail -3 $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_none_s27f.log
"$ncu" --import /tmp/ncu_c64_none.ncu-rep --page raw --csv > /tmp/ncu_c64_none.csv 2>> $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_none_s27f.log
python3 benchmarks/ncu_summary.py /tmp/ncu_c64_none.csv > $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_none_s27f.txt 2>&1
grep -E "^===|gpu__time_duration|gmma_cycles_active.avg.pct_of_peak_sustained_active|issue_active|warps_eligible|warps_active.avg.pct|grid_size|block_size|registers_per|sm__cycles_active.avg |dram__throughput|stall" \
  $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_none_s27f.txt | cut -c1-150 | head -80
timeout 120 "$ncu" --clock-control base --profile-from-start off --section SpeedOfLight --section WarpStateStats \
  --section SchedulerStats --section LaunchStats --section Occupancy --metrics $M -f -o /tmp/ncu_c64_base \
  python3 benchmarks/bench_backward.py --profile --causal --head-dims 64 --seqs 16384 --sdpa cudnn \
  > $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_base_s27f.log 2>&1
echo "ncu rc $?"; tail -3 $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_base_s27f.log
"$ncu" --import /tmp/ncu_c64_base.ncu-rep --page raw --csv > /tmp/ncu_c64_base.csv 2>> $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_base_s27f.log
python3 benchmarks/ncu_summary.py /tmp/ncu_c64_base.csv > $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_base_s27f.txt 2>&1
grep -E "^===|gpu__time_duration|gmma_cycles_active.avg.pct_of_peak_sustained_active|issue_active|warps_eligible|warps_active.avg.pct|grid_size|block_size|registers_per|sm__cycles_active.avg |dram__throughput|stall" \
  $OUT/ncu_bwd_causal_d64_n16384_h200_${D}_base_s27f.txt | cut -c1-150 | head -80
