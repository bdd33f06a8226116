#!/bin/bash
# Twenty-second session (nvidia-h200): the GPU test files changed after s22d's suite (the shared switched_backward
# helper; the new STAGED_STORE GPU file), then D 128's per-block fixed cost by the seq_q sweep with STAGED_STORE on
# (s21f: 157 us before it).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=100 timeout 200 python3 -m pytest -q -p no:cacheprovider -n 14 -rf \
  tests/test_backward_wgmma_staged_store_gpu.py tests/test_backward_wgmma_persistent_gpu.py \
  tests/test_backward_wgmma_tail_split_gpu.py tests/test_backward_wgmma_one_consumer_gpu.py 2>&1 | tail -6 \
  | tee $OUT/switch_tests_h200_${D}_s22h.log
timeout 90 python3 benchmarks/bwd_unit_cost.py --rounds 5 --head-dim 128 --alt 64x128x12x2:-STAGED_STORE 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_unit_cost_d128_staged_h200_${D}_s22h.log
