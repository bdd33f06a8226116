#!/bin/bash
# Twenty-eighth session (nvidia-h200): produce_blocks' one "next block" path (the static walk's render changed: GPU
# tests of both walks), BLOCK_QUEUE (the non-causal walk's blocks from the counter) on in the persistent walk's GPU
# tests, then its A/B: D 64 non-causal, graph replay, both build orders (alt1 queue, alt2 an A/A copy of the served).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
L=$OUT/walk_tests_h200_${D}_s28a.log
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_wgmma_causal_walk_gpu.py \
  tests/test_backward_wgmma_persistent_gpu.py tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_heavy_first_gpu.py > $L 2>&1
tail -2 $L
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.BLOCK_QUEUE=True" timeout 120 python3 -m pytest -q \
  -p no:cacheprovider -n 8 tests/test_backward_wgmma_persistent_gpu.py tests/test_backward_wgmma_tail_split_gpu.py \
  > $OUT/block_queue_tests_h200_${D}_s28a.log 2>&1
tail -2 $OUT/block_queue_tests_h200_${D}_s28a.log
for order in shuffled served-last; do
  timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal false --head-dims 64 --build-order $order \
    --alt 64x128x12x2:BLOCK_QUEUE,64x128x12x2 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_block_queue_h200_${D}_s28a.log
done
