#!/bin/bash
# Twenty-fourth session (nvidia-h200): ALTERNATE_DQ (off; the walk's tile g's dQ by consumer g % 2): the walk's,
# TAIL_SPLIT's and STAGED_STORE's float64 GPU tests with it on, the probe beside the served walk, graph replay (21
# rounds) with two copies on and two A/A copies.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_SWITCHES="autoflash.ops.backward_wgmma.ALTERNATE_DQ=True" AUTOFLASH_TEST_WATCHDOG_S=60 timeout 120 \
  python3 -m pytest -q -p no:cacheprovider -n 14 -rf tests/test_backward_wgmma_persistent_gpu.py \
  tests/test_backward_wgmma_tail_split_gpu.py tests/test_backward_wgmma_staged_store_gpu.py 2>&1 | tail -5 \
  | tee $OUT/alternate_dq_tests_h200_${D}_s24e.log
timeout 60 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false --switches ALTERNATE_DQ 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_phase_clocks_alternate_dq_h200_${D}_s24e.log
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 21 --head-dims 64 --causal false \
  --alt 64x128x12x2:ALTERNATE_DQ,64x128x12x2,64x128x12x2:ALTERNATE_DQ,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_alternate_dq_h200_${D}_s24e.log
