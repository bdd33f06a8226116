#!/bin/bash
# Twenty-second session (nvidia-h200): float64 tests with PREFETCH_KV on; the block clock probe at D 128 (served and
# PREFETCH_KV); PREFETCH_KV against an A/A copy by graph replay (D 128 non-causal); the bar's 16 rows (shuffled build).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.PREFETCH_KV=True" AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_gpu.py 2>&1 | tail -6 | tee $OUT/prefetch_kv_tests_h200_${D}_s22a.log
timeout 90 python3 benchmarks/bwd_block_clocks.py --switches PREFETCH_KV 2>&1 | grep -v -i "warn\|no tuned config" \
  | tee $OUT/bwd_block_clocks_h200_${D}_s22a.log
grep -q " passed" $OUT/prefetch_kv_tests_h200_${D}_s22a.log && ! grep -q "failed\|error" $OUT/prefetch_kv_tests_h200_${D}_s22a.log \
  || { echo "tests did not pass: no timing"; exit 1; }
timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 128 --causal false \
  --alt 64x128x12x2:PREFETCH_KV,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_prefetch_kv_h200_${D}_s22a.log
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_h200_${D}_s22a.log
