#!/bin/bash
# One device call for flash_fwd_wgmma's TMA O store (KernelConfig.o_store; helper FE, issue 18 item 2):
# compile every timed kernel in the background, the float64 tests with the store on
# (tests/test_wgmma_schedule_ostore_gpu.py), then, only if they all pass, the A/B timing at N 1024 (registers vs
# TMA store on the same tiles, the served config, SDPA cuDNN; benchmarks/wgmma_ostore_ab.py --check), then
# bf16 N 4096. Run from the repository root with $OUT set, carry=[".whl"].
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${COMPILE_S:-60} python benchmarks/wgmma_ostore_ab.py --precompile --seq-lens 1024 4096 > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-90} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf \
  tests/test_wgmma_schedule_ostore_gpu.py 2>&1 | grep -v Warning | tee $OUT/tests.log | tail -15
wait; tail -40 $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -q "FAILED\|ERROR" $OUT/tests.log || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-120} python benchmarks/wgmma_ostore_ab.py --check --rounds 7 2>&1 | tee $OUT/bench1024.log | grep "^|\|NVIDIA"
timeout ${BENCH4K_S:-90} python benchmarks/wgmma_ostore_ab.py --seq-lens 4096 --dtypes bf16 --rounds 5 2>&1 \
  | tee $OUT/bench4096.log | grep "^|\|NVIDIA"
