#!/bin/bash
# Nineteenth session, fifth call (nvidia-h200): P^T stored early at D 256 too? flash_bwd_mma's D 256 default (the
# served backward there on the H200) against the template before P_STORE_EARLY (benchmarks/ab_templates/), an A/A copy
# and the variant p_early_all (P^T stored early at every head dim), beside SDPA's FlashAttention-2 backward, CUDA-graph
# replay, one row per process, bf16.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
header=""
for c in no yes; do for n in 4096 16384; do
  timeout 90 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --dtypes bf16 \
    --head-dims 256 --causal $c --seqs $n --extra benchmarks/ab_variants/p_early_all $header 2>&1 \
    | grep -E "^row|^bf16|Error" | tee -a $OUT/bwd_mma_d256_p_early_ab_h200_${D}_s19e.log
  header=--no-header
done; done
