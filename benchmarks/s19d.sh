#!/bin/bash
# Nineteenth session, fourth call (nvidia-h200): the served flash_bwd_mma (P_STORE_EARLY at D 64) against the template
# before it and an A/A copy, with two variants as extra columns: dp_first (dP^T's product issued right after S^T's,
# before the exps, and P^T stored early at every head dim) and dp_first_late_p (the same, P^T stored beside dS^T);
# beside SDPA's FlashAttention-2 backward, CUDA-graph replay, one row per process, bf16.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
header=""
for t in bf16; do for d in 64 128; do for c in no yes; do for n in 4096 16384; do
  timeout 90 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --dtypes $t \
    --head-dims $d --causal $c --seqs $n --extra benchmarks/ab_variants/dp_first \
    --extra benchmarks/ab_variants/dp_first_late_p $header 2>&1 | grep -E "^row|^bf16|^fp16|Error" \
    | tee -a $OUT/bwd_mma_variants_ab_h200_${D}_s19d.log
  header=--no-header
done; done; done; done
