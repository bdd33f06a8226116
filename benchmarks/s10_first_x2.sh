#!/usr/bin/env bash
# (A record: benchmarks/backward_strided_run.sh and its A/A were removed once the strided kernels became the only ones.)
# Tenth session's first call (nvidia-h200-x2, carry .whl): GPU 0 runs every GPU test and `autoflash verify` after the
# ninth session's last host refactors (never run on a GPU); GPU 1 runs ops/backward_wgmma.STRIDED's A/B
# (benchmarks/backward_strided_run.sh: its GPU tests, the A/A on contiguous inputs, the decoder step off/phase 1/
# phase 1+2, the step's profile). Results in $OUT/s10.tgz (a watchdog tars what exists at 570 s).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
OUT_REAL=$OUT; export OUT=/tmp/s10; mkdir -p $OUT/gpu1
( sleep 570; tar czf $OUT_REAL/s10_partial.tgz -C /tmp/s10 . ) &
watchdog=$!
nvidia-smi --query-gpu=index,name --format=csv,noheader
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=0 XDIST=20 TESTS_TIMEOUT=330 TESTS_K="not paged_space" \
  bash benchmarks/h200_final.sh tests verify > $OUT/gpu0_summary.txt 2>&1 &
gpu0=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=1 OUT=$OUT/gpu1 bash benchmarks/backward_strided_run.sh > $OUT/gpu1_summary.txt 2>&1
wait $gpu0
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s10.tgz -C /tmp/s10 .
cat $OUT/gpu1_summary.txt; tail -c 5000 $OUT/gpu0_summary.txt
