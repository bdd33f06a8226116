#!/bin/bash
# Twentieth session (nvidia-h200): PINGPONG (off; the two consumers take turns issuing S^T, dP^T): float64 GPU tests,
# then graph replay of the two-consumer producer tile without (alt1) and with (alt2) it, bf16 D 64 / 128.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
AUTOFLASH_TEST_WATCHDOG_S=60 timeout 120 python3 -m pytest -q -p no:cacheprovider -n 12 \
  tests/test_backward_wgmma_pingpong_gpu.py 2>&1 | tail -3 | tee $OUT/pingpong_tests_h200_${D}_s20j.log
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 9 --dtypes bf16 \
  --alt 64x128x12x2,64x128x12x2:PINGPONG 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_pingpong_h200_${D}_s20j.log
