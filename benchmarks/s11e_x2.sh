#!/usr/bin/env bash
# Eleventh session's closing pass (nvidia-h200-x2, carry .whl), on the session's last served code (IDLE_ROWS_SKIP on
# 192-row tiles with grid()'s spread, HEAVY_FIRST for D 128 causal; tuned_configs as committed). GPU 0: every GPU test,
# `autoflash verify`. GPU 1: `autoflash bench` (the forward grid). Nothing writes tuned_configs/ (see the fourth call in
# NOTES). $OUT/s11e.tgz; a watchdog tars what exists at 570 s.
set -uo pipefail
OUT_REAL=$OUT; export OUT=/tmp/s11e; mkdir -p $OUT
( sleep 570; tar czf $OUT_REAL/s11e_partial.tgz -C /tmp/s11e . ) &
watchdog=$!
TESTS_TIMEOUT=330 XDIST=20 TESTS_K="not paged_space" GPU0_AFTER="verify" BENCH_TIMEOUT=200 GPU1_SECONDS=420 \
  bash benchmarks/final_pass_x2.sh bench > $OUT/final_summary.txt 2>&1
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s11e.tgz -C /tmp/s11e .
tail -c 9000 $OUT/final_summary.txt
