#!/bin/bash
# Nineteenth session, fourth call (nvidia-h200): the served flash_bwd_mma (P_STORE_EARLY at D 64) against the template
# before it and an A/A copy, with two variants as extra columns: dp_first (dP^T's product issued right after S^T's,
# before the exps, and P^T stored early at every head dim) and dp_first_late_p (the same, P^T stored beside dS^T);
# beside SDPA's FlashAttention-2 backward, CUDA-graph replay, one row per process, bf16.
# (the rows' loop: benchmarks/mma_source_ab_rows.sh; the template directories were removed after the run: see
# benchmarks/RESULTS.md "Nineteenth H200 session" for the commits that hold them)
LOG=bwd_mma_variants_ab_h200_$(date +%Y-%m-%d)_s19d.log DTYPES=bf16 DIMS="64 128" bash benchmarks/mma_source_ab_rows.sh \
  --extra benchmarks/ab_variants/dp_first --extra benchmarks/ab_variants/dp_first_late_p
