#!/bin/bash
# One device call for flash_fwd_wgmma's causal trim (WgmmaTemplate.causal_trim, helper FD, issue 18 item 2): compile
# every timed kernel in the background, the float64 tests with the switch on (tests/test_wgmma_fd_gpu.py), then, only
# if they all pass, the A/B at kernel level (served tiles and a second shape, switch off vs on, SDPA cuDNN; graph
# replay, interleaved rounds; --check: trimmed vs untrimmed outputs) on the causal rows below cuDNN: D 64 N 1024 /
# 4096, D 256 N 1024 (and N 4096), bf16 and fp16. Run from the repository root with $OUT set, carry=[".whl"]:
#   bash benchmarks/wgmma_fd_run.sh        (~2-3 min on one H200; logs in $OUT)
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
{ [ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${COMPILE_S:-90} python benchmarks/wgmma_fd_ab.py --precompile > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-150} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf \
  tests/test_wgmma_fd_gpu.py 2>&1 | grep -v Warning | tee $OUT/tests.log | tail -15
wait; tail -40 $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -q "FAILED\|ERROR\|skipped" $OUT/tests.log \
  || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-240} python benchmarks/wgmma_fd_ab.py --check --rounds ${ROUNDS:-7} 2>&1 | tee $OUT/ab.log \
  | grep "^|\|NVIDIA"
