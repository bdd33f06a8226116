#!/bin/bash
# Fifteenth session, sixth call (nvidia-h200, carry=[".whl"]): the fifth call's A/B again (its FA2 runner was not
# capturable: now the aten backward op): flash_bwd_mma new vs the previous template (benchmarks/ab_templates) and an A/A
# copy, beside FA2, bf16 D 64/128 x causal x N 4096/16384, 7 rounds of graph replay.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
timeout 400 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 \
  > $OUT/bwd_mma_ab.log 2>&1
echo "ab rc $?"; grep -v "Warn\|warn" $OUT/bwd_mma_ab.log | tail -20
