#!/bin/bash
# Twenty-fourth session (nvidia-h200): ALTERNATE_DQ served (on). A second A/B (its copies off with -ALTERNATE_DQ, two of
# each, 21 rounds, columns built in a fixed order), the GPU suite and `autoflash verify`, the bar by graph replay
# (served built last) and the per-call table.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 21 --head-dims 64 --causal false --build-order fixed \
  --alt 64x128x12x2:-ALTERNATE_DQ,64x128x12x2,64x128x12x2:-ALTERNATE_DQ,64x128x12x2 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_alternate_dq_off_h200_${D}_s24f.log
XDIST=15 TESTS_TIMEOUT=280 TESTS_K="not paged_space" VERIFY_TIMEOUT=40 SKIP_PIP=1 bash benchmarks/h200_final.sh tests verify \
  2>&1 | tail -8
mv $OUT/tests.log $OUT/tests_h200_${D}_s24f.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s24f.log
timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 9 --served-last 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_served_last_h200_${D}_s24f.log
timeout 100 python3 benchmarks/bench_backward.py --head-dims 64,128 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 \
  --no-det > $OUT/bench_backward_h200_${D}_s24f.log 2>&1; tail -18 $OUT/bench_backward_h200_${D}_s24f.log
