#!/bin/bash
# Twenty-sixth session (nvidia-h200): where the served D 64 wgmma backward's causal N 16384 block goes against its
# non-causal one (causal/non-causal rate ours 0.92, cuDNN's 0.91-1.00), by the clock probe.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:16384:false,bf16:64:16384:true,bf16:64:4096:true \
  2>&1 | grep -v -i "warn\|no tuned config" | tee $OUT/bwd_block_clocks_d64_h200_${D}_s26e.log
