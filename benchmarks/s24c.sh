#!/bin/bash
# Twenty-fourth session (nvidia-h200): the GPU suite and `autoflash verify` with DQ_FREE_ON_FULL served (D 64
# non-causal), then one reading of the bar by graph replay (served built last) and the per-call table.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
XDIST=15 TESTS_TIMEOUT=280 TESTS_K="not paged_space" VERIFY_TIMEOUT=40 SKIP_PIP=1 bash benchmarks/h200_final.sh tests verify \
  2>&1 | tail -14
mv $OUT/tests.log $OUT/tests_h200_${D}_s24c.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s24c.log
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --served-last 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_served_last_h200_${D}_s24c.log
timeout 150 python3 benchmarks/bench_backward.py --head-dims 64,128 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 \
  --no-det > $OUT/bench_backward_h200_${D}_s24c.log 2>&1; tail -18 $OUT/bench_backward_h200_${D}_s24c.log
