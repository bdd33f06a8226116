#!/bin/bash
# Thirty-first session (nvidia-h200): the final code (HEAVY_BY_BATCH and DQ_INTERLEAVE served at D 128 causal, the mma
# switches in ops/backward_mma_switches): every GPU test outside the opt-in paged-space sweep, autoflash verify, then
# the bar (graph replay, shuffled then served last) in the time left.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
SKIP_PIP=1 XDIST=15 TESTS_TIMEOUT=330 TESTS_K="not paged_space" FINAL_DEADLINE=$((T0 + 380)) \
  bash benchmarks/h200_final.sh tests verify
for f in tests verify; do cp $OUT/$f.log $OUT/${f}_h200_${D}_s31c.log; done
grep -E "passed|failed" $OUT/tests.log | tail -2; tail -3 $OUT/verify.log
for order in shuffled served-last; do
  left=$((T0 + 585 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 150 ? left : 150 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --build-order $order 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl" | tee -a $OUT/bench_backward_graph_bar_h200_${D}_s31c.log
done
