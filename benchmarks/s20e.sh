#!/bin/bash
# Twentieth session, fifth call (nvidia-h200): the other backward keys re-tuned at the bar's problem size (16k tokens,
# 2048 / D heads: --tokens 524288 at D 64, 262144 at D 128), as s20d did for flash_bwd_wgmma's D 64 keys:
# flash_bwd_mma (the mma bar's column; its entries date from 2026-11-29, 4-5 trials over a restricted space, before
# P_STORE_EARLY) over its whole space, and flash_bwd_wgmma's D 128 keys.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
tune() {  # template head_dim tokens trials
  timeout 260 python3 -m autoflash.cli tune --op backward --template $1 --dtype bf16,fp16 --head-dim $2 --causal both \
    --seq-len 4096,16384 --key deterministic=no --trials $4 --timeout 30 --warm-start --tokens $3 --out tuned_configs \
    > $OUT/bwd_tune_${1}_d${2}_h200_${D}_s20e.log 2>&1
  tail -14 $OUT/bwd_tune_${1}_d${2}_h200_${D}_s20e.log | cut -c1-75,130-
}
tune flash_bwd_wgmma 128 262144 12
tune flash_bwd_mma 64 524288 24
tune flash_bwd_mma 128 262144 24
cp tuned_configs/sm_90.json $OUT/sm_90.json
