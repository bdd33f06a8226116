#!/usr/bin/env bash
# Tenth session's sixth call (nvidia-h200, carry .whl): flash_bwd_mma's D 128 causal keys had no tuned entry on the H200
# (served its heuristic default, which spills 12-24 B under the device's NVRTC 13.0; 16 of 24 configs are clean). Tune
# them (the tuner prunes spilling configs), re-check every entry, and time the D 128 rows of bench_backward (its mma
# column pins flash_bwd_mma's tuned entry). Logs and sm_90.json in $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afc
timeout 150 python3 -m autoflash.cli tune --op backward --template flash_bwd_mma --dtype bf16,fp16 --head-dim 128 \
    --causal yes --seq-len 4096,16384 --key deterministic=no --trials 24 --timeout 60 --out tuned_configs \
    > $OUT/mma_d128_causal_tune.log 2>&1
cp tuned_configs/sm_90.json $OUT/sm_90.json
timeout 40 python3 -m autoflash.cli verify > $OUT/verify.log 2>&1  # (ran out of its 40 s on a cold compile cache: empty log; the entries were not kept)
timeout 120 python3 benchmarks/bench_backward.py --head-dims 128 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 \
    > $OUT/bench_backward_d128.log 2>&1
tail -22 $OUT/mma_d128_causal_tune.log; tail -2 $OUT/verify.log; tail -12 $OUT/bench_backward_d128.log
