#!/bin/bash
# Twentieth session (nvidia-h200): dq_via_producer=3 (each consumer's dQ over its own 64 keys, two staging tiles, two
# bulk ops a tile; D 64): float64 GPU tests, then graph replay beside the rule's tile (alt1), the one-consumer tile
# (alt3), cuDNN and FA2, bf16 / fp16 D 64; then the D 64 keys re-tuned at the bar's size with 3 in the space.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 12 tests/test_backward_wgmma_dq_producer_gpu.py 2>&1 | tail -3 \
  | tee $OUT/dq_own_keys_tests_h200_${D}_s20h.log
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 9 --head-dims 64 --one-consumer \
  --alt 64x128x12x2,64x128x12x2x3,64x64x8x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_dq_own_keys_h200_${D}_s20h.log
timeout 150 python3 -m autoflash.cli tune --op backward --template flash_bwd_wgmma --dtype bf16,fp16 --head-dim 64 \
  --causal both --seq-len 4096,16384 --key deterministic=no --knob block_m=64 --trials 16 --timeout 40 --warm-start \
  --tokens 524288 --out tuned_configs > $OUT/bwd_tune_d64_h200_${D}_s20h.log 2>&1
tail -12 $OUT/bwd_tune_d64_h200_${D}_s20h.log | cut -c1-75,130-; cp tuned_configs/sm_90.json $OUT/sm_90.json
