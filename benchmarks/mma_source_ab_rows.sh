#!/bin/bash
# flash_bwd_mma source A/B rows on the device, one row per process (benchmarks/bwd_mma_source_ab.py: the served
# template against benchmarks/ab_templates/ and an A/A copy, each extra template directory a column, SDPA's
# FlashAttention-2 beside, CUDA-graph replay, 7 rounds), after the pip line. Rows: DTYPES x DIMS x causal no/yes x N
# 4096/16384; the table goes to $OUT/$LOG. Usage (carry .whl):
#   LOG=name.log DTYPES="bf16 fp16" DIMS="64 128" bash benchmarks/mma_source_ab_rows.sh [--extra DIR ...]
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
header=""
for t in ${DTYPES:-bf16}; do for d in ${DIMS:-64 128}; do for c in no yes; do for n in 4096 16384; do
  timeout 90 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --dtypes $t \
    --head-dims $d --causal $c --seqs $n "$@" $header 2>&1 | grep -E "^row|^bf16|^fp16|Error" | tee -a $OUT/$LOG
  header=--no-header
done; done; done; done
