#!/bin/bash
# Thirty-first session (nvidia-h200): OWN_DV / OWN_DK at D 128 causal again, now that HEAVY_BY_BATCH and DQ_INTERLEAVE
# are served there (the CPU, NVRTC 13.0: 255 registers, 0 B spilled with either or both; s30b read -5..-8 % with 8 B
# spilled on the grouped order). The OWN GPU tests (on at every tile dim), then an A/B on the causal rows: alt1 OWN_DV,
# alt2 OWN_DK, alt3 both, alt4 an A/A copy.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 12 -rf tests/test_backward_mma_own_gpu.py 2>&1 | tail -8 \
  | tee $OUT/own_queries_tests_h200_${D}_s31d.log
for order in shuffled served-last; do
  left=$((T0 + 450 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 170 ? left : 170 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --causal true \
    --build-order $order --alt mma:MMA.OWN_DV,mma:MMA.OWN_DK,mma:MMA.OWN_DV+MMA.OWN_DK,mma 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" | tee -a $OUT/bench_backward_graph_own_d128_h200_${D}_s31d.log
done
