#!/usr/bin/env bash
# Ninth session, after O over Qi was adopted (nvidia-h200-x2, carry .whl): GPU 0 re-tunes the forward's D 256 keys
# (bf16/fp16 x causal x N 1k/4k/16k, warm-started), then `autoflash verify` and `autoflash bench` at D 256; GPU 1
# runs the flash_fwd_wgmma GPU test files. Everything lands in $OUT/s9d256.tgz (tuned_configs/sm_90.json as sm_90.json).
set -uo pipefail
OUT_REAL=$OUT; export OUT=/tmp/s9d; mkdir -p $OUT/t
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1
CUDA_VISIBLE_DEVICES=1 OUT=$OUT/t XDIST=12 TESTS_TIMEOUT=200 TESTS_FILES="$(ls tests/test_wgmma*_gpu.py | tr '\n' ' ')" \
  bash benchmarks/h200_final.sh tests_files > $OUT/gpu1_summary.txt 2>&1 &
CUDA_VISIBLE_DEVICES=0 FORWARD_DIMS=256 FORWARD_TIMEOUT=200 BENCH_ARGS="--head-dim 256" \
  bash benchmarks/h200_final.sh forward verify bench > $OUT/gpu0_summary.txt 2>&1
wait
tar czf $OUT_REAL/s9d256.tgz -C $OUT .
cat $OUT/gpu1_summary.txt $OUT/gpu0_summary.txt | cut -c1-220
