#!/bin/bash
# Twenty-third session, fifth call (nvidia-h200): the walk's laps with, per consumer, the tiles it waited for and the
# ns from their copies' issue (the producer's thread 0) to the wait's end: the query tile's load latency as the
# consumers see it.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 120 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false,bf16:64:16384:false 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_phase_clocks_latency_h200_${D}_s23e.log
