#!/bin/bash
# Twenty-seventh session (nvidia-h200): s27c's tune line failed (--causal takes yes/no/both), so its bar reading is of
# the one-consumer entries. Here: the D 64 causal keys re-tuned with CAUSAL_WALK on (as s20h), the D 64 causal rows on
# the new entries (graph replay, both build orders, the old one-consumer tile as alt1), then every GPU test and verify.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
timeout 150 python3 -m autoflash.cli tune --op backward --template flash_bwd_wgmma --dtype bf16,fp16 --head-dim 64 \
  --causal yes --seq-len 4096,16384 --key deterministic=no --knob block_m=64 --trials 16 --timeout 40 --warm-start \
  --tokens 524288 --out tuned_configs > $OUT/bwd_tune_d64_causal_h200_${D}_s27d.log 2>&1
tail -9 $OUT/bwd_tune_d64_causal_h200_${D}_s27d.log | cut -c1-75,130-; cp tuned_configs/sm_90.json $OUT/sm_90.json
for order in served-last shuffled; do
  timeout 100 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order $order \
    --alt 64x64x8x2 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_d64_causal_walk_served_h200_${D}_s27d.log
done
SKIP_PIP=1 XDIST=15 TESTS_TIMEOUT=330 FINAL_DEADLINE=$((T0 + 560)) bash benchmarks/h200_final.sh tests verify
for f in tests verify; do cp $OUT/$f.log $OUT/${f}_h200_${D}_s27d.log; done
