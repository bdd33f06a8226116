#!/bin/bash
# Eighteenth session, ninth call (nvidia-h200): a served backward call split into its parts (whole call, the plan's
# three launches, each launch alone) beside cuDNN, at the table's D 64 and D 128 non-causal N 4096 rows.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache PYTHONUNBUFFERED=1
for d in 64 128; do
  timeout 100 python3 benchmarks/backward_call_parts_probe.py --head-dim $d 2>&1
done | tee $OUT/backward_call_parts_h200_$(date +%Y-%m-%d)_s18i.log
