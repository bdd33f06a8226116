#!/usr/bin/env bash
# One device call on nvidia-h200-x2 (carry .whl): GPU 0 runs every GPU test (and the h200_final.sh parts in
# $GPU0_PARTS, e.g. "verify") while GPU 1 runs the command given, with $OUT pointing at its own folder. Everything lands
# in $OUT/<tag>.tgz; a watchdog tars what exists at 570 s. Usage: bash benchmarks/suite_beside_x2.sh TAG COMMAND...
#   e.g. GPU0_PARTS=verify bash benchmarks/suite_beside_x2.sh s10d bash benchmarks/some_ab_run.sh
set -uo pipefail
tag=$1; shift
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
OUT_REAL=$OUT; export OUT=/tmp/$tag; mkdir -p $OUT/gpu1
( sleep 570; tar czf $OUT_REAL/${tag}_partial.tgz -C /tmp/$tag . ) &
watchdog=$!
nvidia-smi --query-gpu=index,name --format=csv,noheader
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=0 XDIST=20 TESTS_TIMEOUT=${TESTS_TIMEOUT:-330} TESTS_K="not paged_space" \
  bash benchmarks/h200_final.sh tests ${GPU0_PARTS:-} > $OUT/gpu0_summary.txt 2>&1 &
gpu0=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=1 OUT=$OUT/gpu1 "$@" > $OUT/gpu1_summary.txt 2>&1
wait $gpu0
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/$tag.tgz -C /tmp/$tag .
cat $OUT/gpu1_summary.txt; tail -c 3000 $OUT/gpu0_summary.txt
