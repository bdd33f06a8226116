#!/bin/bash
# What the seventh session (no GPU time) left to run, as one device call on nvidia-h200-x2 (carry .whl, ~6 min):
#   GPU 0: flash_fwd_wgmma's causal_trim (wgmma_fd_run.sh: its float64 tests, then the A/B against cuDNN), then
#          flash_bwd_wgmma's DQ_STAGE_ROTATE (bench_bd_run.sh: its float64 tests, then the A/B);
#   GPU 1: the paged decode keys re-tuned with the swizzle in the space, the bf16 D 128 window keys re-tuned with the
#          TMA O store in the space (NOTES, helper SA's W0), then issue 15's tables (h200_final.sh paged window
#          bench_kvcache; the re-tuned sm_90.json lands in gpu1/: copy it to tuned_configs/, then verify it).
# Each script logs into its own folder under $OUT; all of it comes back as $OUT/pending.tgz, the summaries last.
#   run(kind="nvidia-h200-x2", carry=[".whl"], timeout_s=600, command="bash benchmarks/pending_x2.sh")
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export SKIP_PIP=1 FINAL_DEADLINE=$(( $(date +%s) + ${GPU1_SECONDS:-420} ))
logs=/tmp/pending; mkdir -p $logs/fd $logs/bd $logs/gpu1
nvidia-smi --query-gpu=index,name --format=csv,noheader
( export CUDA_VISIBLE_DEVICES=0
  OUT=$logs/fd bash benchmarks/wgmma_fd_run.sh > $logs/fd/summary.txt 2>&1
  OUT=$logs/bd bash benchmarks/bench_bd_run.sh > $logs/bd/summary.txt 2>&1 ) &
CUDA_VISIBLE_DEVICES=1 OUT=$logs/gpu1 bash benchmarks/h200_final.sh paged window bench_kvcache > $logs/gpu1/summary.txt 2>&1
wait
tar -czf "$OUT/pending.tgz" -C $logs .
for part in fd bd gpu1; do echo "===== $part"; tail -40 $logs/$part/summary.txt; done
