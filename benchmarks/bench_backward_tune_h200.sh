#!/bin/bash
# One device call (issue 16, helper K): tune the flash_bwd_mma keys of the H200 (bf16/fp16 x D 64/128 x
# causal both, N buckets 4096/16384), then time the tuned entries against the heuristic default and SDPA's
# flash/cuDNN backward in the same call. Writes $OUT/tuned/sm_90.json (backward entries only: merged into
# tuned_configs/sm_90.json on the workstation with store.merge), logs and the table.
# Space: warps 8, stages 2, block_m 64/128 (the sweep of benchmarks/bench_backward_h200_2026-11-29_sweep.txt:
# 4-warp and 1-stage tiles were never ahead at D 64/128; block_m 128 is new): 4-5 valid configs a key, exhaustive.
export PYTHONUNBUFFERED=1
mkdir -p "$OUT/tuned"
start=$(date +%s)
timeout 75 python -m autoflash.cli tune --op backward --arch sm_90 --template flash_bwd_mma --dtype bf16,fp16 \
    --head-dim 64,128 --causal both --seq-len 4096,16384 --key deterministic=no --knob warps=8 --knob stages=2 \
    --knob block_m=64,128 --trials 5 --timeout 30 --warm-start --out "$OUT/tuned" --log "$OUT/tune_log.json" \
    > "$OUT/tune.txt" 2>&1
echo "tune rc $? after $(( $(date +%s) - start )) s"; tail -n 22 "$OUT/tune.txt" | cut -c1-200
left=$(( ${BUDGET:-108} - ($(date +%s) - start) ))
[ -s "$OUT/tuned/sm_90.json" ] && export AUTOFLASH_TUNED_CONFIGS="$OUT/tuned"
timeout $left python benchmarks/bench_backward.py --dtypes bf16,fp16 --head-dims 64,128 --seqs 4096,16384 \
    --sdpa flash,cudnn --no-det --lse-from sdpa --rounds 3 --json "$OUT/bwd_tuned.json" > "$OUT/bwd_tuned.txt" 2>&1
echo "bench rc $? after $(( $(date +%s) - start )) s"; grep -v "^  " "$OUT/bwd_tuned.txt" | tail -n 20; grep -c served "$OUT/bwd_tuned.txt"
