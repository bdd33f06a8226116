#!/bin/bash
# Fifteenth session, second call (nvidia-h200, carry=[".whl"]): the first call's tuner (TPE, 24 trials) kept the
# two-consumer softcap/ALiBi tiles without saying whether it timed a three-consumer one. Here every tile of a small
# space (block_m 128/192, block_n 64-128, stages 2/3, schedule rules) is timed per key, exhaustively, with the trials
# listed (autoflash show --log), into a copy of tuned_configs. Also: which three-consumer GPU test failed, and why.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
timeout 100 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_wgmma_three_consumer_variants_gpu.py 2>&1 \
  | grep -E "^E .{0,300}|FAILED|passed|failed" | cut -c1-400 | head -12
cp -r tuned_configs /tmp/vt
KNOBS="--knob block_m=128,192 --knob block_n=64,80,96,112,128 --knob stages=2,3 --knob pingpong=-1 --knob persistent=-1 --knob o_store=-1"
for v in "softcap no" "alibi yes"; do
  set -- $v
  timeout 150 python3 -m autoflash.cli tune --dtype bf16 --head-dim 64,128 --causal $2 --key $1=yes --seq-len 4096 --template flash_fwd_wgmma \
    $KNOBS --sampler exhaustive --trials 20 --out /tmp/vt --log /tmp/$1_trials.json > /tmp/$1_tune.log 2>&1
  echo "$1 tune rc $?"; grep -A4 "^problem" /tmp/$1_tune.log; tail -1 /tmp/$1_tune.log
  python3 -m autoflash.cli show --log /tmp/$1_trials.json 2>&1 | grep -E "trials|COMPLETE|PRUNED|FAIL" | cut -c5-140 | head -40
done
