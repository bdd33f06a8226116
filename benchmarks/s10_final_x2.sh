#!/usr/bin/env bash
# Tenth session's closing pass (nvidia-h200-x2, carry .whl), after the last change to served code (bb11b42's
# strided-only backward, TMA_LOADS removed). GPU 0: every GPU test, `autoflash verify`, `autoflash bench` (the forward
# grid). GPU 1: bench_backward (whole calls vs SDPA), the training step, the host table. $OUT/final.tgz; a watchdog
# tars what exists at 570 s.
set -uo pipefail
OUT_REAL=$OUT; export OUT=/tmp/fp; mkdir -p $OUT
( sleep 570; tar czf $OUT_REAL/final_partial.tgz -C /tmp/fp . ) &
watchdog=$!
TESTS_TIMEOUT=300 XDIST=20 TESTS_K="not paged_space" GPU0_AFTER="verify bench" BENCH_TIMEOUT=200 \
  GPU1_SECONDS=480 BACKWARD_TIMEOUT=240 \
  bash benchmarks/final_pass_x2.sh bench_backward training host > /tmp/fp/final_summary.txt 2>&1
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/final.tgz -C /tmp/fp .
tail -c 11000 /tmp/fp/final_summary.txt
