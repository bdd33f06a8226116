#!/bin/bash
# Sixteenth session, last call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh): the
# tuner end to end through its GPU runner after KernelBinary carries the template values (the runner's launch plans
# read them): flash_bwd_wgmma's causal bf16 D 128 key (the heavy-first grid) and the deterministic one (its counter
# waits), 6 trials each, into a scratch folder (never the checked-in file beside a test run).
export PYTHONPATH=$PWD:$PWD/benchmarks:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache-gpu1
mkdir -p /tmp/scratch_tuned
for det in no yes; do
    timeout 200 python3 -m autoflash.cli tune --op backward --template flash_bwd_wgmma --dtype bf16 --head-dim 128 \
        --causal yes --seq-len 4096 --key deterministic=$det --trials 6 --timeout 60 --out /tmp/scratch_tuned \
        > $OUT/bwd_tune_det_$det.log 2>&1
    echo "deterministic=$det: exit $?"; tail -8 $OUT/bwd_tune_det_$det.log
done
