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
# (benchmarks/ab_run.sh does the steps)
COMPILE_S=${COMPILE_S:-90} TESTS_S=${TESTS_S:-160} BENCH_S=${BENCH_S:-110} BENCH16K_S=0 AB_ARGS="--check --rounds ${ROUNDS:-7}" \
  bash benchmarks/ab_run.sh benchmarks/wgmma_softcap_ab.py tests/test_wgmma_softcap_rcp_gpu.py tests/test_wgmma_alibi_columns_gpu.py
