#!/bin/bash
# Twenty-fourth session (nvidia-h200): OWN_HALF_FIRST (off; ALTERNATE_DQ's owner issues its own keys' dQ half before
# the hand-over wait): float64 GPU tests with it on (the walk's files, the wgmma backward's, autograd), the probe,
# graph replay 21 rounds with two copies on and two A/A copies. Short: ~240 s of device time were left.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
S=OWN_HALF_FIRST
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.$S=True" AUTOFLASH_TEST_WATCHDOG_S=60 timeout 100 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_persistent_gpu.py \
  tests/test_backward_wgmma_tail_split_gpu.py tests/test_backward_wgmma_staged_store_gpu.py \
  tests/test_backward_wgmma_gpu.py tests/test_autograd_gpu.py 2>&1 | tail -4 | tee $OUT/own_half_first_tests_h200_${D}_s24g.log
timeout 45 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false --switches $S 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | grep -A5 "per consumer" | tee $OUT/bwd_phase_clocks_own_half_first_h200_${D}_s24g.log
timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 21 --head-dims 64 --causal false \
  --alt 64x128x12x2:$S,64x128x12x2,64x128x12x2:$S,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_own_half_first_h200_${D}_s24g.log
