#!/usr/bin/env bash
# (A record: both switches and their run scripts were removed after this call: neither moved beyond the spread, NOTES "Tenth session".)
# Tenth session's fifth call (nvidia-h200-x2, carry .whl): two off-by-default switches' GPU tests and A/Bs side by side.
# GPU 0: flash_bwd_mma's query-tile order (ops/backward_kernels.Q_ORDER, helper MB; benchmarks/backward_mma_q_order_run.sh).
# GPU 1: flash_bwd_wgmma's look-ahead loop at D 64 (ops/backward_wgmma.PIPELINE, helper PL; backward_pipeline_run.sh).
# Logs: $OUT/mb_q_order/, $OUT/pl/.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1
mkdir -p $OUT/pl
CUDA_VISIBLE_DEVICES=0 bash benchmarks/backward_mma_q_order_run.sh > $OUT/mb_summary.txt 2>&1 &
mb=$!
CUDA_VISIBLE_DEVICES=1 OUT=$OUT/pl bash benchmarks/backward_pipeline_run.sh > $OUT/pl_summary.txt 2>&1
wait $mb
echo "== PL (GPU 1)"; cat $OUT/pl_summary.txt; echo "== MB (GPU 0)"; cat $OUT/mb_summary.txt
