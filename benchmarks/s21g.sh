#!/bin/bash
# Twenty-first session (nvidia-h200): PERSISTENT_ONE_KV (off; the persistent walk at D 128 with one K/V buffer):
# float64 GPU tests (the persistent file at D 64 and 128; the tail-split and wgmma files with it on), then D 128
# non-causal by graph replay against an A/A copy, and its block fixed cost.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 python3 -m pytest -q -p no:cacheprovider -n 12 -rf \
  tests/test_backward_wgmma_persistent_gpu.py 2>&1 | tail -8 | tee $OUT/persistent_one_kv_tests_h200_${D}_s21g.log
grep -q " passed" $OUT/persistent_one_kv_tests_h200_${D}_s21g.log \
  && ! grep -q "failed\|error" $OUT/persistent_one_kv_tests_h200_${D}_s21g.log || { echo "tests did not pass"; exit 1; }
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.PERSISTENT_ONE_KV=True" AUTOFLASH_TEST_WATCHDOG_S=100 timeout 120 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_gpu.py 2>&1 | tail -6 | tee -a $OUT/persistent_one_kv_tests_h200_${D}_s21g.log
timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 128 --causal false \
  --alt 64x128x12x2:PERSISTENT_ONE_KV,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_one_kv_h200_${D}_s21g.log
timeout 60 python3 benchmarks/bwd_unit_cost.py --rounds 5 --head-dim 128 --alt 64x128x12x2:PERSISTENT_ONE_KV 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_unit_cost_one_kv_h200_${D}_s21g.log
