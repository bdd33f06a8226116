#!/bin/bash
# Twentieth session, fourth call (nvidia-h200): s20c's tuner timed its default problem (131072 = batch x heads x N)
# and picked the opposite tiles of graph replay at the bar's rows (16k tokens x 32 heads = 524288). Re-tune the 8 D 64
# keys at --tokens 524288, then graph replay with both tiles as columns (alt1 two consumers, alt2 one) beside the
# served one, cuDNN and FA2, and the per-call table at D 64.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m autoflash.cli tune --op backward --template flash_bwd_wgmma --dtype bf16,fp16 --head-dim 64 \
  --causal both --seq-len 4096,16384 --key deterministic=no --knob block_m=64 --trials 16 --timeout 40 --warm-start \
  --tokens 524288 --out tuned_configs > $OUT/bwd_tune_d64_h200_${D}_s20d.log 2>&1
tail -14 $OUT/bwd_tune_d64_h200_${D}_s20d.log; cp tuned_configs/sm_90.json $OUT/sm_90.json
timeout 200 python3 benchmarks/bench_backward_graph.py --dtypes bf16,fp16 --head-dims 64 --alt 64x128x12x2,64x64x8x2 \
  2>&1 | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_h200_${D}_s20d.log
timeout 120 python3 benchmarks/bench_backward.py --head-dims 64 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 --no-det \
  > $OUT/bench_backward_d64_h200_${D}_s20d.log 2>&1; tail -10 $OUT/bench_backward_d64_h200_${D}_s20d.log
