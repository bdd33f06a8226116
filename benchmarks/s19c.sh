#!/bin/bash
# Nineteenth session, third call (nvidia-h200): flash_bwd_mma with P_STORE_EARLY at D 64 only (the s19b result) against
# the template before it (benchmarks/ab_templates/) and an A/A copy, with two variants as extra columns: dq_first (the
# 2-D layout's dK product after the dQ adds, not before the dQ product) and dq_first_p_early (that, and P^T stored
# early at every head dim); beside SDPA's FlashAttention-2 backward, CUDA-graph replay, one row per process.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
header=""
for t in bf16 fp16; do for d in 64 128; do for c in no yes; do for n in 4096 16384; do
  timeout 90 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --dtypes $t \
    --head-dims $d --causal $c --seqs $n --extra benchmarks/ab_variants/dq_first \
    --extra benchmarks/ab_variants/dq_first_p_early $header 2>&1 | grep -E "^row|^bf16|^fp16|Error" \
    | tee -a $OUT/bwd_mma_variants_ab_h200_${D}_s19c.log
  header=--no-header
done; done; done; done
