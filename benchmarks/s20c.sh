#!/bin/bash
# Twentieth session, third call (nvidia-h200): ONE_CONSUMER on (it joins flash_bwd_wgmma's space at D 64); the tuner
# re-tunes the 8 D 64 keys (bf16/fp16 x causal x N 4k/16k) over block_m 64 tiles (the one-consumer tile among them);
# then the new entries served: graph replay beside cuDNN and FA2, the per-call table at D 64, autoflash verify.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m autoflash.cli tune --op backward --template flash_bwd_wgmma --dtype bf16,fp16 --head-dim 64 \
  --causal both --seq-len 4096,16384 --key deterministic=no --knob block_m=64 --trials 16 --timeout 30 --warm-start \
  --out tuned_configs > $OUT/bwd_tune_d64_h200_${D}_s20c.log 2>&1
tail -14 $OUT/bwd_tune_d64_h200_${D}_s20c.log; cp tuned_configs/sm_90.json $OUT/sm_90.json
timeout 150 python3 benchmarks/bench_backward_graph.py --dtypes bf16,fp16 --head-dims 64 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_h200_${D}_s20c.log
timeout 120 python3 benchmarks/bench_backward.py --head-dims 64 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 --no-det \
  > $OUT/bench_backward_d64_h200_${D}_s20c.log 2>&1; tail -10 $OUT/bench_backward_d64_h200_${D}_s20c.log
timeout 200 python3 -m autoflash.cli verify > $OUT/verify_h200_${D}_s20c.log 2>&1; tail -4 $OUT/verify_h200_${D}_s20c.log
