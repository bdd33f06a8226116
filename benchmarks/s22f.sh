#!/bin/bash
# Twenty-second session (nvidia-h200): the block clock probe on the persistent D 64 walk (marks by the walk's block).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 90 python3 benchmarks/bwd_block_clocks.py --switches=-PERSISTENT \
  --rows bf16:64:4096:false,bf16:64:16384:false,fp16:64:4096:false 2>&1 \
  | grep -v -i "warn\|no tuned config" | tee $OUT/bwd_block_clocks_persistent_h200_${D}_s22f.log
