#!/bin/bash
# Fifteenth session, third call (nvidia-h200, carry=[".whl"]): Nsight Compute over flash_bwd_mma (the mma column's
# config) and SDPA's FlashAttention-2 backward, bf16 D 64 N 16384 non-causal (the mma bar's worst row, 0.89x FA2), one
# launch each: where do the 6-11 % go? Raw sections + shared-memory bank conflicts, instruction and reduction counts.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks || exit 1
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
M=l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
M=$M,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum
M=$M,smsp__inst_executed.sum,smsp__sass_inst_executed_op_shared_ld.sum,smsp__sass_inst_executed_op_shared_st.sum
M=$M,smsp__sass_inst_executed_op_global_red.sum,smsp__sass_inst_executed_op_global_ld.sum,smsp__sass_inst_executed_op_ldsm.sum
M=$M,sm__inst_executed_pipe_tensor_op_hmma.sum,smsp__sass_thread_inst_executed_op_hfma_pred_on.sum
for c in "" "--causal"; do
  tag=${c:+causal}; tag=${tag:-noncausal}
  timeout 200 "$ncu" --clock-control none --profile-from-start off --section SpeedOfLight --section WarpStateStats \
    --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section LaunchStats \
    --section Occupancy --metrics $M -f -o /tmp/ncu_mma_$tag \
    python3 benchmarks/bench_backward.py --profile --mma --head-dims 64 --seqs 16384 --sdpa flash $c > $OUT/ncu_mma_$tag.log 2>&1
  echo "ncu $tag rc $?"; head -3 $OUT/ncu_mma_$tag.log
  "$ncu" --import /tmp/ncu_mma_$tag.ncu-rep --page raw --csv > /tmp/ncu_mma_$tag.csv 2>> $OUT/ncu_mma_$tag.log
  python3 benchmarks/ncu_summary.py /tmp/ncu_mma_$tag.csv > $OUT/ncu_mma_$tag.txt 2>&1
  "$ncu" --import /tmp/ncu_mma_$tag.ncu-rep --page raw --csv --metrics $M,gpu__time_duration.sum,launch__registers_per_thread,launch__occupancy_limit_registers,sm__warps_active.avg.pct_of_peak_sustained_active 2>/dev/null \
    | cut -c1-2000 > $OUT/ncu_mma_${tag}_extra.csv
done
grep -E "^===|gpu__time|issue_active|warps_eligible|tensor_op_hmma.*active|warps_active|stalls" $OUT/ncu_mma_noncausal.txt | cut -c1-160
