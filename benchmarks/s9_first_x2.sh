#!/usr/bin/env bash
# Ninth session's first call (nvidia-h200-x2, carry .whl): GPU 0 runs every GPU test then `autoflash verify`
# (the eighth session's review mends had not run on a GPU); GPU 1 runs O_VIA_Q's tests + A/B
# (wgmma_o_via_q_run.sh), then host_backward.py's cProfile of attention_backward. Everything lands in $OUT/s9.tgz.
set -uo pipefail
OUT_REAL=$OUT; export OUT=/tmp/s9; mkdir -p $OUT/oq
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1
CUDA_VISIBLE_DEVICES=0 XDIST=22 TESTS_TIMEOUT=370 TESTS_K="not paged_space" bash benchmarks/h200_final.sh tests verify \
  > $OUT/gpu0_summary.txt 2>&1 &
( export CUDA_VISIBLE_DEVICES=1 OUT=$OUT/oq; bash benchmarks/wgmma_o_via_q_run.sh > $OUT/oq/run.txt 2>&1
  PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks timeout 90 python3 benchmarks/host_backward.py > $OUT/host_backward.log 2>&1 )
wait
tar czf $OUT_REAL/s9.tgz -C $OUT .
cat $OUT/oq/run.txt; tail -30 $OUT/host_backward.log; cat $OUT/gpu0_summary.txt
