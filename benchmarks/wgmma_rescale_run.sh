#!/bin/bash
# One device call for flash_fwd_wgmma's rescale skip (WgmmaTemplate.rescale_skip, helper RS after helper SA's census:
# no O rescale when no row of the warp moved its max). Compile the timed kernels in the background, run the GPU tests
# with the switch on (tests/test_wgmma_rescale_skip_gpu.py: O and LSE bitwise equal to the switch off and within the
# float64 reference on the served plain tiles, D 64 / 128 / 256, causal or not, bf16 / fp16; inputs whose max moves
# on every tile and never moves; softcap + window + ALiBi + sinks), then, only if they all pass, the A/B at kernel
# level (benchmarks/wgmma_rescale_ab.py: served plain tiles off vs on beside SDPA cuDNN, bf16, D 64 / 128 / 256,
# causal both, N 4096 and 1024; graph replay, interleaved rounds; --check: on vs off bitwise).
# Run from the repository root with $OUT set, carry=[".whl"]:
#   bash benchmarks/wgmma_rescale_run.sh   (worst case ~150 s: compile 60 s beside tests 80 s, A/B 70 s; logs: $OUT)
# SKIP_PIP=1: /tmp/site is already installed (benchmarks/pending_x2.sh installs it once for all its scripts).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
{ [ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${COMPILE_S:-60} python benchmarks/wgmma_rescale_ab.py --precompile > $OUT/rescale_compile.log 2>&1 &
timeout ${TESTS_S:-80} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf \
  tests/test_wgmma_rescale_skip_gpu.py 2>&1 | grep -v Warning | tee $OUT/rescale_tests.log | tail -15
wait; tail -20 $OUT/rescale_compile.log
grep -q " passed" $OUT/rescale_tests.log && ! grep -qiE "failed|error|skipped" $OUT/rescale_tests.log \
  || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-70} python benchmarks/wgmma_rescale_ab.py --check --rounds ${ROUNDS:-7} 2>&1 \
  | tee $OUT/rescale_ab.log | grep "^|\|STUB\|NVIDIA"
