#!/usr/bin/env bash
# The closing pass on a two-GPU machine (nvidia-h200-x2), in one device call (carry .whl): GPU 0 runs every
# GPU test while GPU 1 runs the listed h200_final.sh parts one after another (tuning, verify, benchmarks), so
# the benchmarks never share a GPU with the tests ($TESTS_PART=tests_files: only the files in $TESTS_FILES;
# $GPU0_AFTER: parts GPU 0 runs once its tests are done). Usage: bash benchmarks/final_pass_x2.sh dv verify bench_kvcache
set -uo pipefail
# A tune part merges into tuned_configs/ while GPU 0's xdist workers collect tests parametrised over that file: they then
# collect different lists and the suite does not run (eleventh session, fourth call). Tune first, or in another call.
for part in "$@"; do
    case $part in forward|decode|paged|variants|window|dv|bwd_tune)
        echo "final_pass_x2.sh: '$part' writes tuned_configs/ beside GPU 0's tests; run it in its own call" >&2; exit 2 ;;
    esac
done
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1 OUT=${OUT:-/tmp/out}
export FINAL_DEADLINE=$(( $(date +%s) + ${GPU1_SECONDS:-420} ))  # GPU 1 starts no part after this
nvidia-smi --query-gpu=index,name --format=csv,noheader
CUDA_VISIBLE_DEVICES=0 XDIST=${XDIST:-18} FINAL_DEADLINE= bash benchmarks/h200_final.sh ${TESTS_PART:-tests} ${GPU0_AFTER:-} > "$OUT/gpu0_summary.txt" 2>&1 &
CUDA_VISIBLE_DEVICES=1 SUMMARY_FILE="$OUT/gpu1_partial.txt" bash benchmarks/h200_final.sh "$@" > "$OUT/gpu1_summary.txt" 2>&1
wait
cat "$OUT/gpu1_summary.txt" "$OUT/gpu0_summary.txt"
