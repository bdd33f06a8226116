#!/bin/bash
# Twenty-third session, fourth call (nvidia-h200): the clock probe's laps with the producer's own (its wait for a free
# stage, its loads, its dQ reduction) and consumer 0's wait for a free dQ staging buffer, on the D 64 walk; beside,
# the same tile without the walk (-PERSISTENT).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 120 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false,bf16:64:16384:false \
  --switches=-PERSISTENT 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bwd_phase_clocks_producer_h200_${D}_s23d.log
