#!/bin/bash
# Nineteenth session, third call (nvidia-h200): flash_bwd_mma with P_STORE_EARLY at D 64 only (the s19b result) against
# the template before it (benchmarks/ab_templates/) and an A/A copy, with two variants as extra columns: dq_first (the
# 2-D layout's dK product after the dQ adds, not before the dQ product) and dq_first_p_early (that, and P^T stored
# early at every head dim); beside SDPA's FlashAttention-2 backward, CUDA-graph replay, one row per process.
# (the rows' loop: benchmarks/mma_source_ab_rows.sh; the template directories were removed after the run: see
# benchmarks/RESULTS.md "Nineteenth H200 session" for the commits that hold them)
LOG=bwd_mma_variants_ab_h200_$(date +%Y-%m-%d)_s19c.log DTYPES="bf16 fp16" DIMS="64 128" bash benchmarks/mma_source_ab_rows.sh \
  --extra benchmarks/ab_variants/dq_first --extra benchmarks/ab_variants/dq_first_p_early
