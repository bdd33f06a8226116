#!/bin/bash
# One device call for a flash_bwd_wgmma dQ-path A/B (benchmarks/dq_ab.py's scripts): compile the timed kernels in the
# background, the float64 GPU tests named after the script, then, only if they all pass, the A/B timing at N 4096
# and (BENCH16K_S > 0) bf16 D 128 N 16384. Usage, from the repository root with $OUT set, carry=[".whl"]:
#   bash benchmarks/dq_ab_run.sh benchmarks/bench_dq_tile_reduce.py tests/test_backward_wgmma_dq_tile_gpu.py [-k ...]
# Time limits (s): COMPILE_S 40, TESTS_S 60, BENCH_S 55, BENCH16K_S 25 (0: no N 16384 run).
bench=$1; shift
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
{ [ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${COMPILE_S:-40} python "$bench" --precompile > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-60} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf "$@" 2>&1 | grep -v Warning \
  | tee $OUT/tests.log | tail -15
wait; tail -24 $OUT/compile.log | grep -v " 0 B spilled" ; grep -c " 0 B spilled" $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -q "FAILED\|ERROR" $OUT/tests.log || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-55} python "$bench" 2>&1 | tee $OUT/bench.log | tail -12
[ "${BENCH16K_S:-25}" = 0 ] || timeout ${BENCH16K_S:-25} python "$bench" --dtypes bf16 --head-dims 128 --seqs 16384 2>&1 \
  | tee $OUT/bench16k.log | tail -4
