#!/bin/bash
# Twenty-fifth session (nvidia-h200): the final tree (heavy-first by groups of 64 MB served): GPU suite, verify, the bar
# by graph replay (served built last).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
XDIST=15 TESTS_TIMEOUT=280 TESTS_K="not paged_space" VERIFY_TIMEOUT=40 SKIP_PIP=1 bash benchmarks/h200_final.sh tests verify \
  2>&1 | tail -8
mv $OUT/tests.log $OUT/tests_h200_${D}_s25f.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s25f.log
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 9 --served-last 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_served_last_h200_${D}_s25f.log
