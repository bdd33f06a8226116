#!/usr/bin/env bash
# Ninth session's fourth call (nvidia-h200-x2, carry .whl). GPU 0: flash_bwd_wgmma UNIFORM_WG values 1-4 compiled with
# the device's NVRTC, tests + A/B of the clean pick (bwd_uniform_wg_pick_run.sh). GPU 1: the training plans' GPU tests
# + host table (host_backward_run.sh), then the forward's causal D 64/128 keys re-tuned after the forward UNIFORM_WG
# (bf16/fp16 x N 1k/4k/16k, warm-started). Everything lands in $OUT/s9c4.tgz (tuned_configs/sm_90.json as sm_90.json).
set -uo pipefail
OUT_REAL=$OUT; D=/tmp/s9c4; mkdir -p $D/bu $D/hb
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export SKIP_PIP=1
( export CUDA_VISIBLE_DEVICES=1
  OUT=$D/hb bash benchmarks/host_backward_run.sh > $D/hb_run.txt 2>&1
  PYTHONPATH=/tmp/site:$PWD AUTOFLASH_CACHE_DIR=/tmp/afcache1 timeout 150 python3 -m autoflash.cli tune \
    --dtype bf16,fp16 --head-dim 64,128 --causal yes --seq-len 1024,4096,16384 --trials 12 --timeout 12 --warm-start \
    --out tuned_configs > $D/forward_causal_tune.log 2>&1
  cp tuned_configs/sm_90.json $D/sm_90.json ) &
CUDA_VISIBLE_DEVICES=0 OUT=$D/bu bash benchmarks/bwd_uniform_wg_pick_run.sh > $D/bu_run.txt 2>&1
wait
tar czf $OUT_REAL/s9c4.tgz -C $D .
for f in bu_run hb_run; do echo "##### $f"; cut -c1-250 $D/$f.txt | grep -v "^  compiled"; done
tail -22 $D/forward_causal_tune.log | cut -c1-200
