#!/usr/bin/env bash
# Tenth session's second call (nvidia-h200-x2, carry .whl), after flash_bwd_wgmma's strided kernels became the default
# for views (ops/backward_wgmma.STRIDED on, O laid out like q): GPU 0 runs every GPU test; GPU 1 the training step
# (bench_training --quick: attention fwd+bwd and the decoder step vs SDPA's default) and the host table. $OUT/s10b.tgz.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
OUT_REAL=$OUT; export OUT=/tmp/s10b; mkdir -p $OUT/gpu1
( sleep 570; tar czf $OUT_REAL/s10b_partial.tgz -C /tmp/s10b . ) &
watchdog=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=0 XDIST=20 TESTS_TIMEOUT=330 TESTS_K="not paged_space" \
  bash benchmarks/h200_final.sh tests > $OUT/gpu0_summary.txt 2>&1 &
gpu0=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=1 OUT=$OUT/gpu1 bash benchmarks/h200_final.sh training host > $OUT/gpu1_summary.txt 2>&1
wait $gpu0
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s10b.tgz -C /tmp/s10b .
cat $OUT/gpu1_summary.txt; tail -c 3000 $OUT/gpu0_summary.txt
