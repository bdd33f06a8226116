#!/usr/bin/env bash
# Eleventh session's fourth call (nvidia-h200-x2, carry .whl): the closing pass over the session's last served code
# (IDLE_ROWS_SKIP on 192-row tiles with grid()'s spread, HEAVY_FIRST for D 128 causal). GPU 0: every GPU test and
# `autoflash verify`. GPU 1: (1) the D 64 causal N 1024 keys (the two rows still below cuDNN) searched over the schedule
# knobs around their 128 x 128 entries (exhaustive: ping-pong, persistent grid, stages, block_n) into tuned_configs/
# (merged only if faster), (2) `autoflash bench` on D 64 N 1024 with 9 rounds, (3) the IDLE_ROWS_SKIP A/B as served
# (before / served / A/A), (4) bench_variants (window on D 64 uses 192-row tiles). $OUT/s11d.tgz; a watchdog at 570 s.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
OUT_REAL=$OUT; export OUT=/tmp/s11d; mkdir -p $OUT/gpu1/idle
( sleep 570; cp tuned_configs/sm_90.json $OUT/; tar czf $OUT_REAL/s11d_partial.tgz -C /tmp/s11d . ) &
watchdog=$!
SKIP_PIP=1 CUDA_VISIBLE_DEVICES=0 XDIST=20 TESTS_TIMEOUT=330 TESTS_K="not paged_space" \
  bash benchmarks/h200_final.sh tests verify > $OUT/gpu0_summary.txt 2>&1 &
gpu0=$!
( export CUDA_VISIBLE_DEVICES=1 PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afc1
  timeout 120 python3 -m autoflash.cli tune --dtype bf16,fp16 --head-dim 64 --causal yes --seq-len 1024 \
      --template flash_fwd_wgmma --knob block_m=128 --knob block_n=96,112,128,144 --knob stages=2,3,4 \
      --knob pingpong=-1,0 --knob persistent=-1,0 --knob o_store=-1 --trials 48 --sampler exhaustive --timeout 100 \
      --out tuned_configs > $OUT/gpu1/tune_d64_causal_n1024.log 2>&1
  cp tuned_configs/sm_90.json $OUT/sm_90.json
  timeout 90 python3 -m autoflash.cli bench --head-dim 64 --seq-len 1024 --rounds 9 --out $OUT/gpu1/bench_d64_n1024.json \
      > $OUT/gpu1/bench_d64_n1024.log 2>&1
  SKIP_PIP=1 OUT=$OUT/gpu1/idle bash benchmarks/wgmma_idle_rows_run.sh > $OUT/gpu1/idle_summary.txt 2>&1
  SKIP_PIP=1 OUT=$OUT/gpu1 VARIANTS_ARGS=--graph bash benchmarks/h200_final.sh bench_variants > $OUT/gpu1/variants_summary.txt 2>&1
) > $OUT/gpu1_summary.txt 2>&1
wait $gpu0
kill $watchdog 2>/dev/null
tar czf $OUT_REAL/s11d.tgz -C /tmp/s11d .
grep -E "merged|^(bf16|fp16) d64|time: wall" $OUT/gpu1/tune_d64_causal_n1024.log | tail -8
grep "|\|vs cuDNN" $OUT/gpu1/bench_d64_n1024.log | tail -6; tail -16 $OUT/gpu1/idle_summary.txt
tail -12 $OUT/gpu1/variants_summary.txt; tail -c 2500 $OUT/gpu0_summary.txt
