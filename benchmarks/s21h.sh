#!/bin/bash
# Twenty-first session (nvidia-h200): TAIL_WAVES (off; host-side: TAIL_SPLIT's parts over more than one wave where
# fewer than two a tile fit the last one, e.g. D 128's 68 of 2048 tiles): float64 GPU tests with it on (the tail-split
# file with two 68-left cases, the persistent and wgmma files), then D 128 non-causal by graph replay against an A/A copy.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.TAIL_WAVES=True" AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_tail_split_gpu.py \
  tests/test_backward_wgmma_persistent_gpu.py tests/test_backward_wgmma_gpu.py 2>&1 | tail -6 \
  | tee $OUT/tail_waves_tests_h200_${D}_s21h.log
grep -q " passed" $OUT/tail_waves_tests_h200_${D}_s21h.log && ! grep -q "failed\|error" $OUT/tail_waves_tests_h200_${D}_s21h.log \
  || { echo "tests did not pass: no timing"; exit 1; }
timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 128 --causal false \
  --alt 64x128x12x2:TAIL_WAVES,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_tail_waves_h200_${D}_s21h.log
