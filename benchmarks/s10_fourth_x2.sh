#!/usr/bin/env bash
# (A record: TMA_LOADS and its run script were removed after this call: 0.95-0.96x at D 64, NOTES "Tenth session".)
# Tenth session's fourth call (nvidia-h200-x2, carry .whl). GPU 0: every GPU test and `autoflash verify` after the
# strided-only backward (bb11b42), the re-tuned forward entries and helper CL's packed-launch merge. GPU 1: helper TB's
# ops/backward_wgmma.TMA_LOADS (benchmarks/backward_tma_loads_run.sh: its GPU tests, then the A/B beside cuDNN).
# Results in $OUT/s10d.tgz.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
OUT_REAL=$OUT; export OUT=/tmp/s10d; mkdir -p $OUT/gpu1
( sleep 560; tar czf $OUT_REAL/s10d_partial.tgz -C /tmp/s10d . ) &
watchdog=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=0 XDIST=20 TESTS_TIMEOUT=330 TESTS_K="not paged_space" \
  bash benchmarks/h200_final.sh tests verify > $OUT/gpu0_summary.txt 2>&1 &
gpu0=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=1 OUT=$OUT/gpu1 bash benchmarks/backward_tma_loads_run.sh > $OUT/gpu1_summary.txt 2>&1
wait $gpu0
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s10d.tgz -C /tmp/s10d .
cat $OUT/gpu1_summary.txt; tail -c 2500 $OUT/gpu0_summary.txt
