#!/bin/bash
# One device call for flash_fwd_wgmma's variant switches (helper SC, after helper SA's census): softcap_rcp (the
# softcap's reciprocal by one MUFU.RCP) and alibi_columns (ALiBi's column form with the column as an FFMA immediate).
# Compile the timed kernels in the background, run the float64 tests with each switch on
# (tests/test_wgmma_softcap_rcp_gpu.py: D 64 / 128, bf16 / fp16, softcap alone and with window, ALiBi, sinks, causal
# both alignments, large logits, varlen, NaN rows; tests/test_wgmma_alibi_columns_gpu.py: the served ALiBi tiles,
# causal and not, with window / sinks / softcap, usual, per-batch and old-form slopes, varlen), then, only if they
# all pass, the A/B at kernel level (benchmarks/wgmma_softcap_ab.py: served variant tiles off vs on beside served
# plain, bf16 N 4096, D 128 and 64; graph replay, interleaved rounds; --check: on vs off outputs).
# Run from the repository root with $OUT set, carry=[".whl"]:
#   bash benchmarks/wgmma_softcap_run.sh   (worst case ~280 s: compile 90 s beside tests 160 s, A/B 110 s; logs: $OUT)
# SKIP_PIP=1: /tmp/site is already installed (benchmarks/pending_x2.sh installs it once for all its scripts).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
{ [ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl; } && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout ${COMPILE_S:-90} python benchmarks/wgmma_softcap_ab.py --precompile > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-160} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf \
  tests/test_wgmma_softcap_rcp_gpu.py tests/test_wgmma_alibi_columns_gpu.py 2>&1 | grep -v Warning \
  | tee $OUT/tests.log | tail -15
wait; tail -12 $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -q "FAILED\|ERROR\|skipped" $OUT/tests.log \
  || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-110} python benchmarks/wgmma_softcap_ab.py --check --rounds ${ROUNDS:-7} 2>&1 | tee $OUT/ab.log \
  | grep "^|\|STUB\|NVIDIA"
