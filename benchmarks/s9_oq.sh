#!/usr/bin/env bash
# O_VIA_Q's tests + A/B (wgmma_o_via_q_run.sh) on GPU 0, host_backward.py's profile on GPU 1 at the same time
# (separate GPUs). Everything lands in $OUT/s9oq.tgz.
set -uo pipefail
OUT_REAL=$OUT; D=/tmp/s9oq; mkdir -p $D/oq
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1
CUDA_VISIBLE_DEVICES=1 PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks timeout 90 python3 benchmarks/host_backward.py > $D/host_backward.log 2>&1 &
CUDA_VISIBLE_DEVICES=0 OUT=$D/oq bash benchmarks/wgmma_o_via_q_run.sh > $D/oq_run.txt 2>&1
wait
tar czf $OUT_REAL/s9oq.tgz -C $D .
cat $D/oq_run.txt; tail -40 $D/host_backward.log
