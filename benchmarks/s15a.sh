#!/bin/bash
# Fifteenth session, first call (nvidia-h200, carry=[".whl"]), logs in $OUT:
# 1. softcap / ALiBi on three consumer warpgroups (now admitted beside a smaller K/V tile) against float64;
# 2. the softcap (non-causal) and ALiBi (causal) keys, bf16 D 64/128, N 4096/16384, re-tuned with three consumers in
#    the space, seeded with the shipped entries, into a copy (/tmp/vt), then bench_variants on that copy (graph replay);
# 3. the D 64 decode entries re-tuned with the current kernel into a copy (/tmp/retune), then the probe on the entries'
#    own grids: served (default, default2 = A/A) against what the copy serves (alt).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
timeout 110 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_wgmma_three_consumer_variants_gpu.py \
  > $OUT/three_consumer_tests.log 2>&1
echo "three-consumer tests rc $?"; tail -3 $OUT/three_consumer_tests.log
cp -r tuned_configs /tmp/vt
timeout 100 python3 -m autoflash.cli tune --dtype bf16 --head-dim 64,128 --causal no --key softcap=yes \
  --seq-len 4096,16384 --trials 24 --warm-start --out /tmp/vt > $OUT/softcap_tune.log 2>&1
echo "softcap tune rc $?"; grep -A8 "^problem" $OUT/softcap_tune.log; tail -1 $OUT/softcap_tune.log
timeout 100 python3 -m autoflash.cli tune --dtype bf16 --head-dim 64,128 --causal yes --key alibi=yes \
  --seq-len 4096,16384 --trials 24 --warm-start --out /tmp/vt > $OUT/alibi_tune.log 2>&1
echo "alibi tune rc $?"; grep -A8 "^problem" $OUT/alibi_tune.log; tail -1 $OUT/alibi_tune.log
cp /tmp/vt/sm_90.json $OUT/vt_sm_90.json
AUTOFLASH_TUNED_CONFIGS=/tmp/vt timeout 100 python3 benchmarks/bench_variants.py --head-dims 128 64 --seqs 4096 \
  --variants softcap alibi --graph --no-flex --rounds 5 --json $OUT/bench_variants.json > $OUT/bench_variants.log 2>&1
echo "bench_variants rc $?"; tail -8 $OUT/bench_variants.log
cp -r tuned_configs /tmp/retune
timeout 90 python3 -m autoflash.cli tune --op decode --dtype bf16,fp16 --head-dim 64 --key m_tiles=1 --key paged=no \
  --seq-len 1024,8192 --trials 24 --warm-start --out /tmp/retune > $OUT/decode_retune.log 2>&1
echo "decode tune rc $?"; grep -A6 "^problem" $OUT/decode_retune.log; tail -1 $OUT/decode_retune.log
cp /tmp/retune/sm_90.json $OUT/retune_sm_90.json
ROWS="d64 32/8 b256 n1024,d64 8/1 b256 n8192,d64 32/8 b32 n8192,d64 8/1 b64 n8192,d64 8/1 b256 n1024"
timeout 100 python3 benchmarks/decode_gap_probe.py --rounds 5 --rows "$ROWS" --variants default,default2 \
  --alt-tuned /tmp/retune --json $OUT/decode_probe.json > $OUT/decode_probe.log 2>&1
echo "probe rc $?"; tail -7 $OUT/decode_probe.log
