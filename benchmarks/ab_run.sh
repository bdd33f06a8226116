#!/bin/bash
# One device call for an off-by-default switch's A/B: compile the timed kernels in the background (BENCH
# --precompile), the switch's float64 GPU tests, then, only if they all pass (none failed, errored or skipped), the
# A/B timing (BENCH $AB_ARGS) and (BENCH16K_S > 0, the dQ scripts of benchmarks/dq_ab.py) its bf16 D 128 N 16384 rows.
# Usage, from the repository root with $OUT set, carry=[".whl"] (SKIP_PIP=1: /tmp/site is already installed):
#   bash benchmarks/ab_run.sh benchmarks/bench_dq_tile_reduce.py tests/test_backward_wgmma_dq_tile_gpu.py [-k ...]
# Time limits (s): COMPILE_S 40, TESTS_S 60, BENCH_S 55, BENCH16K_S 25 (0: no N 16384 run). Logs: $OUT/*.log.
bench=$1; shift
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
{ [ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${COMPILE_S:-40} python "$bench" --precompile > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-60} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf "$@" 2>&1 | grep -v Warning \
  | tee $OUT/tests.log | tail -15
wait; tail -24 $OUT/compile.log | grep -v " 0 B spilled" ; grep -c " 0 B spilled" $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -qiE "failed|error|skipped" $OUT/tests.log \
  || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-55} python "$bench" ${AB_ARGS:-} 2>&1 | tee $OUT/bench.log | grep "^|\|NVIDIA\|STUB"
[ "${BENCH16K_S:-25}" = 0 ] || timeout ${BENCH16K_S:-25} python "$bench" --dtypes bf16 --head-dims 128 --seqs 16384 2>&1 \
  | tee $OUT/bench16k.log | tail -4
