#!/bin/bash
# Thirtieth session (nvidia-h200): Nsight Compute over flash_bwd_mma (the mma column's config) and SDPA's
# FlashAttention-2 backward, bf16 D 128 N 16384, causal (the mma bar's lowest row, 0.85-0.97x FA2) and non-causal (its
# control: 0.97-0.98x), one launch each: instruction mix, shared-memory wavefronts, stalls, per-SM load balance.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); TAG=${TAG:-s30e}  # (s31f: TAG=s31f, the same profile on later code)
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
M=l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum
M=$M,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
M=$M,smsp__inst_executed.sum,smsp__sass_inst_executed_op_ldsm.sum,smsp__sass_inst_executed_op_shared_st.sum
M=$M,smsp__sass_inst_executed_op_global_red.sum,sm__inst_executed_pipe_tensor_op_hmma.sum
M=$M,sm__cycles_active.max,sm__cycles_active.min,sm__cycles_active.avg,lts__t_sector_hit_rate.pct
M=$M,lts__t_sectors_op_red.sum,dram__bytes_read.sum,dram__bytes_write.sum
for c in "--causal" ""; do
  tag=${c:+causal}; tag=${tag:-noncausal}; f=$OUT/ncu_bwd_mma_fa2_d128_n16384_${tag}_h200_${D}_${TAG}
  timeout 150 "$ncu" --clock-control none --profile-from-start off --section SpeedOfLight --section WarpStateStats \
    --section SchedulerStats --section LaunchStats --metrics $M -f -o /tmp/ncu_$tag \
    python3 benchmarks/bench_backward.py --profile --mma --head-dims 128 --seqs 16384 --sdpa flash $c > $f.log 2>&1
  echo "ncu $tag rc $?"
  "$ncu" --import /tmp/ncu_$tag.ncu-rep --page raw --csv > /tmp/ncu_$tag.csv 2>> $f.log
  python3 benchmarks/ncu_summary.py /tmp/ncu_$tag.csv > $f.txt 2>&1
  grep -E "^===|gpu__time_duration|issue_active|cycles_active\.(max|min|avg) |inst_executed.sum|op_ldsm|wavefronts|hit_rate|stalls" $f.txt | cut -c1-200
done
