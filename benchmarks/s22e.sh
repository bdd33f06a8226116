#!/bin/bash
# Twenty-second session (nvidia-h200): EARLY_QUERY (off) with STAGED_STORE on: float64 tests with it on; the block
# clock probe (served and EARLY_QUERY); graph replay against served at D 128 and D 64 causal (the one-consumer tile).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.EARLY_QUERY=True" AUTOFLASH_TEST_WATCHDOG_S=100 timeout 200 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_gpu.py tests/test_backward_wgmma_one_consumer_gpu.py 2>&1 | tail -6 \
  | tee $OUT/early_query_tests_h200_${D}_s22e.log
timeout 90 python3 benchmarks/bwd_block_clocks.py --switches EARLY_QUERY \
  --rows bf16:128:4096:false,bf16:128:4096:true,fp16:128:4096:false,bf16:64:4096:true 2>&1 \
  | grep -v -i "warn\|no tuned config" | tee $OUT/bwd_block_clocks_early_query_h200_${D}_s22e.log
grep -q " passed" $OUT/early_query_tests_h200_${D}_s22e.log && ! grep -q "failed\|error" $OUT/early_query_tests_h200_${D}_s22e.log \
  || { echo "tests did not pass: no timing"; exit 1; }
timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 128 --seqs 4096 \
  --alt 64x128x12x2:EARLY_QUERY,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_early_query_h200_${D}_s22e.log
