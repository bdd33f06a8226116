#!/bin/bash
# Twenty-first session (nvidia-h200): PERSISTENT (off; TAIL_SPLIT's blocks walked by one CTA an SM, the next block's
# K, V loaded under the block before): float64 GPU tests (its own file, then the tail-split and wgmma files with it
# on), a block's fixed cost (bwd_unit_cost.py), the D 64 non-causal rows by graph replay against an A/A copy.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 python3 -m pytest -q -p no:cacheprovider -n 10 -rf \
  tests/test_backward_wgmma_persistent_gpu.py 2>&1 | tail -8 | tee $OUT/persistent_tests_h200_${D}_s21d.log
grep -q " passed" $OUT/persistent_tests_h200_${D}_s21d.log && ! grep -q "failed\|error" $OUT/persistent_tests_h200_${D}_s21d.log \
  || { echo "persistent tests did not pass: no timing"; exit 1; }
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.PERSISTENT=True" AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_gpu.py 2>&1 | tail -6 | tee -a $OUT/persistent_tests_h200_${D}_s21d.log
timeout 150 python3 benchmarks/bwd_unit_cost.py --rounds 7 --alt 64x128x12x2:PERSISTENT,64x128x12x2 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_unit_cost_persistent_h200_${D}_s21d.log
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 15 --head-dims 64 --causal false \
  --alt 64x128x12x2:PERSISTENT,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_persistent_h200_${D}_s21d.log
