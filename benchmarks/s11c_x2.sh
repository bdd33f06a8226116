#!/usr/bin/env bash
# Eleventh session's third call (nvidia-h200-x2, carry .whl), after IDLE_ROWS_SKIP (on, with grid()'s spread rule) and
# HEAVY_FIRST (D 128 causal) became the served code and TAIL_SPLIT was removed. GPU 1: the forward D 64 N 1024 keys
# re-tuned with the skip on (warm-started, 24 trials; 192-row causal tiles now leave their idle warpgroups out), then
# bench_backward, the training step and the host table. GPU 0: every GPU test, `autoflash verify` (the re-tuned
# entries included: the tune ends before the tests do), `autoflash bench` (the forward grid). $OUT/s11c.tgz; a watchdog
# tars what exists at 570 s.
set -uo pipefail
OUT_REAL=$OUT; export OUT=/tmp/s11c; mkdir -p $OUT
( sleep 570; cp tuned_configs/sm_90.json $OUT/; tar czf $OUT_REAL/s11c_partial.tgz -C /tmp/s11c . ) &
watchdog=$!
FORWARD_DIMS=64 FORWARD_SEQS=1024 FORWARD_TRIALS=24 FORWARD_TIMEOUT=90 TESTS_TIMEOUT=300 XDIST=20 \
  TESTS_K="not paged_space" GPU0_AFTER="verify bench" BENCH_TIMEOUT=200 GPU1_SECONDS=420 \
  bash benchmarks/final_pass_x2.sh forward bench_backward training host > $OUT/final_summary.txt 2>&1
cp tuned_configs/sm_90.json $OUT/
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s11c.tgz -C /tmp/s11c .
tail -c 11000 $OUT/final_summary.txt
