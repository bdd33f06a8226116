#!/bin/bash
# Twenty-second session (nvidia-h200): STAGED_STORE on: the whole GPU suite and autoflash verify; graph replay of the
# served tiles against STAGED_STORE off (D 64 non-causal: the persistent walk; D 128, served built last).
export PYTHONUNBUFFERED=1
XDIST=15 TESTS_TIMEOUT=280 TESTS_K="not paged_space" VERIFY_TIMEOUT=40 bash benchmarks/h200_final.sh tests verify
D=$(date +%Y-%m-%d)
mv $OUT/tests.log $OUT/tests_h200_${D}_s22d.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s22d.log
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests
timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 64 --causal false \
  --alt 64x128x12x2:-STAGED_STORE,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_staged_d64_h200_${D}_s22d.log
timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 128 --served-last \
  --alt 64x128x12x2:-STAGED_STORE 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_staged_d128_h200_${D}_s22d.log
