#!/bin/bash
# Fourteenth session, ninth call (nvidia-h200, carry .whl): the forward A/B scripts after their shared part moved to
# benchmarks/forward_ab.py run end to end (one round, graphs of 2 launches: a smoke run, not a measurement).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
timeout 60 python3 benchmarks/wgmma_switch_ab.py --switch IDLE_ROWS_SKIP --precompile > $OUT/pre.log 2>&1; echo "precompile rc $?"
timeout 90 python3 benchmarks/wgmma_switch_ab.py --switch IDLE_ROWS_SKIP --rounds 1 --calls 2 --check 2>&1 | tail -11
timeout 60 python3 benchmarks/wgmma_idle_rows_ab.py --rows d128 --rounds 1 --calls 2 --check 2>&1 | tail -3
