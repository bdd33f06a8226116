#!/bin/bash
# Twenty-third session (nvidia-h200): the walk's laps with each wait repeated at once (its phase complete): what an
# mbarrier wait costs by itself on consumer 0's path.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 90 python3 benchmarks/bwd_block_clocks.py --rows bf16:64:4096:false,bf16:64:16384:false 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_phase_clocks_rewait_h200_${D}_s23i.log
