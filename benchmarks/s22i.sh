#!/bin/bash
# Twenty-second session (nvidia-h200): PRODUCER_STORE (off): float64 tests with it on, the block clock probe on the
# persistent D 64 walk, graph replay against an A/A copy (D 64 non-causal).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.PRODUCER_STORE=True" AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_persistent_gpu.py \
  tests/test_backward_wgmma_staged_store_gpu.py tests/test_backward_wgmma_tail_split_gpu.py 2>&1 | tail -6 \
  | tee $OUT/producer_store_tests_h200_${D}_s22i.log
grep -q " passed" $OUT/producer_store_tests_h200_${D}_s22i.log && ! grep -q "failed\|error" $OUT/producer_store_tests_h200_${D}_s22i.log \
  || { echo "tests did not pass: no timing"; exit 1; }
timeout 60 python3 benchmarks/bwd_block_clocks.py --switches PRODUCER_STORE \
  --rows bf16:64:4096:false,bf16:64:16384:false,fp16:64:4096:false 2>&1 \
  | grep -v -i "warn\|no tuned config" | tee $OUT/bwd_block_clocks_producer_store_h200_${D}_s22i.log
timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 64 --causal false \
  --alt 64x128x12x2:PRODUCER_STORE,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_producer_store_h200_${D}_s22i.log
