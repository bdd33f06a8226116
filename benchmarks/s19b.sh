#!/bin/bash
# Nineteenth session, second call (nvidia-h200): flash_bwd_mma with P^T stored to shared memory right after its exp
# (before the dP^T mmas, FlashAttention-2's order) instead of beside dS^T after them: the backward GPU tests of the
# mma template, then the A/B against the previous template (benchmarks/ab_templates/) and an A/A copy, beside SDPA's
# FlashAttention-2 backward, CUDA-graph replay, one row per process (bwd_mma_source_ab.py; dk, dv bitwise vs old).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf tests/test_backward_gpu.py \
  tests/test_backward_variants_gpu.py tests/test_varlen_backward_gpu.py tests/test_backward_head_dim_v_gpu.py 2>&1 \
  | grep -v Warning > $OUT/bwd_mma_p_early_tests_h200_${D}_s19b.log; tail -3 $OUT/bwd_mma_p_early_tests_h200_${D}_s19b.log
header=""
for d in 64 128; do for c in no yes; do for n in 4096 16384; do
  timeout 60 python3 benchmarks/bwd_mma_source_ab.py --old-templates benchmarks/ab_templates --rounds 7 --head-dims $d \
    --causal $c --seqs $n $header 2>&1 | grep -E "^row|^bf16|Error" | tee -a $OUT/bwd_mma_p_early_ab_h200_${D}_s19b.log
  header=--no-header
done; done; done
