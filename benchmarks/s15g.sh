#!/bin/bash
# Fifteenth session, seventh call: which launch of bwd_mma_source_ab's d64 N 16384 row faults (eager, one by one,
# CUDA_LAUNCH_BLOCKING=0), then compute-sanitizer on the new kernel's row if it is ours.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache CUDA_LAUNCH_BLOCKING=0
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
timeout 120 python3 benchmarks/s15_dbg.py > $OUT/dbg.log 2>&1; grep -E "graph|^4096|^16384|eager|Error" $OUT/dbg.log | grep -v moduleUnload | head -20
