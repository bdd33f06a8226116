#!/bin/bash
# One device call for flash_bwd_wgmma's DQ_ALTERNATE switch (helper BK; issue 16): compile the timed kernels in the
# background, the float64 gradient tests with the switch on (tests/test_backward_wgmma_dq_alternate_gpu.py) and
# dq_via_producer's knob tests that pin or serve configs (the rule, the knob spelled 0 / 1), then, only if they all
# pass, the A/B timing (benchmarks/bench_dq_alternate.py: D 64 N 4096 bf16/fp16, causal and not, beside SDPA
# cuDNN). Fits a 110 s call. Run from the repository root with $OUT set, carry=[".whl"].
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 30 python benchmarks/bench_dq_alternate.py --precompile > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-45} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf \
  tests/test_backward_wgmma_dq_alternate_gpu.py tests/test_backward_wgmma_dq_producer_gpu.py \
  -k "alternat or two_runs or serves_the_rule or d64_bottom or d128_top" 2>&1 | grep -v Warning \
  | tee $OUT/tests.log | tail -15
wait; tail -16 $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -q "FAILED\|ERROR" $OUT/tests.log || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-40} python benchmarks/bench_dq_alternate.py 2>&1 | tee $OUT/bench.log | tail -8
