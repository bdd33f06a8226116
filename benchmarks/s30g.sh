#!/bin/bash
# Thirtieth session (nvidia-h200): warp-stall samples per SASS instruction (Nsight Compute SourceCounters) of the mma
# backward's causal D 128 N 16384 kernel and FA2's (s30e: ours loses on issue rate, lg_throttle 0.70 vs 0.01, long
# scoreboard 0.99 vs 0.44), and of ours non-causal (the S form: 58 M shared-load bank conflicts): which instructions?
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for c in "--causal" ""; do
  tag=${c:+causal}; tag=${tag:-noncausal}; f=$OUT/ncu_src_bwd_mma_fa2_d128_n16384_${tag}_h200_${D}_s30g
  timeout 120 "$ncu" --clock-control none --profile-from-start off \
    --kernel-name regex:"flash_bwd_mma_.*_wq2(_causal)?\$|flash_bwd_dq_dk_dv_loop" --section SourceCounters \
    --section WarpStateStats --import-source no -f -o /tmp/ncu_src_$tag python3 benchmarks/bench_backward.py --profile \
    --mma --head-dims 128 --seqs 16384 --sdpa flash $c > $f.log 2>&1
  echo "ncu $tag rc $?"
  "$ncu" --import /tmp/ncu_src_$tag.ncu-rep --page source --csv --print-source sass > /tmp/ncu_src_$tag.csv 2>> $f.log
  gzip -c /tmp/ncu_src_$tag.csv > $f.csv.gz
  python3 benchmarks/ncu_summary.py --source /tmp/ncu_src_$tag.csv > $f.txt 2>&1
  cut -c1-300 $f.txt | head -40
done
