#!/bin/bash
# Twenty-first session (nvidia-h200): PERSISTENT on (the served D 64 non-causal tiles): the whole GPU suite and
# autoflash verify, then the bar's 16 rows by graph replay (shuffled order, 11 rounds).
export PYTHONUNBUFFERED=1
XDIST=15 TESTS_TIMEOUT=400 TESTS_K="not paged_space" bash benchmarks/h200_final.sh tests verify
D=$(date +%Y-%m-%d)
cp $OUT/tests.log $OUT/tests_h200_${D}_s21e.log; cp $OUT/verify.log $OUT/verify_h200_${D}_s21e.log
rm -f $OUT/tests.log $OUT/verify.log
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
timeout 170 python3 benchmarks/bench_backward_graph.py --rounds 11 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_h200_${D}_s21e.log
