#!/bin/bash
# Nineteenth session, eighth call (nvidia-h200): P^T stored early at D 256 with the served warps_q 4 layout? The
# served template (P^T late at D 256) against the template of 5703c1f (benchmarks/ab_templates/: the same order) and
# an A/A copy, with p_early_all as an extra column, beside SDPA's FlashAttention-2 backward, graph replay, bf16.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
header=""
for c in no yes; do for n in 4096 16384; do
  timeout 90 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --dtypes bf16 \
    --head-dims 256 --causal $c --seqs $n --extra benchmarks/ab_variants/p_early_all $header 2>&1 \
    | grep -E "^row|^bf16|Error" | tee -a $OUT/bwd_mma_d256_wq4_p_early_ab_h200_${D}_s19h.log
  header=--no-header
done; done
