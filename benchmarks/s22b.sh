#!/bin/bash
# Twenty-second session (nvidia-h200): the block clock probe again (s22a's failed on the module's global's name).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 120 python3 benchmarks/bwd_block_clocks.py --switches PREFETCH_KV \
  --rows bf16:128:4096:false,bf16:128:4096:true,bf16:128:16384:false,bf16:64:4096:true 2>&1 \
  | grep -v -i "warn\|no tuned config" | tee $OUT/bwd_block_clocks_h200_${D}_s22b.log
