#!/bin/bash
# Twenty-third session, third call (nvidia-h200): DEEP_RING (a third query-tile buffer for the D 64 walk's plain
# schedule): its float64 GPU tests, the clock probe's per-phase laps beside the served walk, then graph replay
# against an A/A copy of the served tile beside cuDNN (D 64 non-causal, bf16 / fp16, N 4096 / 16384).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=100 timeout 150 python3 -m pytest -q -p no:cacheprovider -n 6 -rf \
  tests/test_backward_wgmma_deep_ring_gpu.py tests/test_backward_wgmma_deep_ring.py 2>&1 | tail -4 \
  | tee $OUT/deep_ring_tests_h200_${D}_s23c.log
timeout 120 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false,bf16:64:16384:false \
  --switches DEEP_RING --stages 3 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bwd_phase_clocks_deep_ring_h200_${D}_s23c.log
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 64 --causal false \
  --alt 64x128x12x3:DEEP_RING,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_deep_ring_h200_${D}_s23c.log
