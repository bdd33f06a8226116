#!/bin/bash
# Fifteenth session, fourth call (nvidia-h200, carry=[".whl"]): warp-stall samples per SASS instruction (Nsight
# Compute SourceCounters) of flash_bwd_mma's main kernel and FA2's, bf16 D 64 N 16384 non-causal, one launch each:
# the third call found ours 1.15x FA2's time with 11 % fewer instructions, its excess in mio_throttle and
# long_scoreboard stalls. Which instructions hold them?
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks || exit 1
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 300 "$ncu" --clock-control none --profile-from-start off \
  --kernel-name regex:"flash_bwd_mma_.*_wq2\$|flash_bwd_dq_dk_dv_loop" --section SourceCounters --section WarpStateStats \
  --import-source no -f -o /tmp/ncu_src python3 benchmarks/bench_backward.py --profile --mma --head-dims 64 --seqs 16384 \
  --sdpa flash > $OUT/ncu_src.log 2>&1
echo "ncu rc $?"; tail -3 $OUT/ncu_src.log
"$ncu" --import /tmp/ncu_src.ncu-rep --page source --csv --print-source sass > /tmp/ncu_src.csv 2>> $OUT/ncu_src.log
gzip -c /tmp/ncu_src.csv > $OUT/ncu_src_mma_fa2.csv.gz
python3 benchmarks/ncu_summary.py --source /tmp/ncu_src.csv > $OUT/ncu_src_mma_fa2.txt 2>&1
cut -c1-330 $OUT/ncu_src_mma_fa2.txt | head -80
