#!/bin/bash
# What the seventh session (no GPU time) left to run, as one device call on nvidia-h200-x2 (carry .whl, <= 9.5 min):
#   GPU 0: flash_fwd_wgmma's causal_trim (wgmma_fd_run.sh), softcap_rcp and alibi_columns (wgmma_softcap_run.sh), then
#          flash_bwd_wgmma's DQ_STAGE_ROTATE (bench_bd_run.sh): each its float64 tests, then its A/B;
#   GPU 1: the paged decode keys re-tuned with the swizzle in the space, the bf16 D 128 window keys re-tuned with the
#          TMA O store in the space (NOTES, helper SA's W0), then issue 15's tables (h200_final.sh paged window
#          bench_kvcache; the re-tuned sm_90.json lands in gpu1/: copy it to tuned_configs/, then verify it), then
#          flash_fwd_wgmma's rescale_skip (wgmma_rescale_run.sh: bitwise tests, then its A/B).
# A script starts only while its worst case still fits before the deadline ($PENDING_SECONDS, default 540 s from
# the start), so the logs always come back: all of it as $OUT/pending.tgz, the summaries printed last.
#   run(kind="nvidia-h200-x2", carry=[".whl"], timeout_s=600, command="bash benchmarks/pending_x2.sh")
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
deadline=$(( $(date +%s) + ${PENDING_SECONDS:-540} ))
export SKIP_PIP=1 FINAL_DEADLINE=$(( deadline - 120 ))  # h200_final.sh starts no part after this
logs=/tmp/pending; mkdir -p $logs/fd $logs/softcap $logs/bd $logs/gpu1 $logs/rescale
nvidia-smi --query-gpu=index,name --format=csv,noheader

fits() {  # fits NAME WORST_CASE_SECONDS: true if a script of that worst case ends before the deadline
    if [ $(( deadline - $(date +%s) )) -lt "$2" ]; then echo "skipped: $1 (deadline)" >> $logs/skipped.txt; return 1; fi
}
( export CUDA_VISIBLE_DEVICES=0
  fits causal_trim 200 && OUT=$logs/fd bash benchmarks/wgmma_fd_run.sh > $logs/fd/summary.txt 2>&1
  fits softcap_rcp+alibi_columns 290 && OUT=$logs/softcap bash benchmarks/wgmma_softcap_run.sh > $logs/softcap/summary.txt 2>&1
  fits dq_stage_rotate 150 && OUT=$logs/bd bash benchmarks/bench_bd_run.sh > $logs/bd/summary.txt 2>&1 ) &
( export CUDA_VISIBLE_DEVICES=1
  OUT=$logs/gpu1 bash benchmarks/h200_final.sh paged window bench_kvcache > $logs/gpu1/summary.txt 2>&1
  fits rescale_skip 150 && OUT=$logs/rescale bash benchmarks/wgmma_rescale_run.sh > $logs/rescale/summary.txt 2>&1 )
wait
tar -czf "$OUT/pending.tgz" -C $logs .
cat $logs/skipped.txt 2>/dev/null
for part in fd softcap bd gpu1 rescale; do echo "===== $part"; tail -30 $logs/$part/summary.txt 2>/dev/null; done
