#!/bin/bash
# Nineteenth session, fifth call (nvidia-h200): P^T stored early at D 256 too? flash_bwd_mma's D 256 default (the
# served backward there on the H200) against the template before P_STORE_EARLY (benchmarks/ab_templates/), an A/A copy
# and the variant p_early_all (P^T stored early at every head dim), beside SDPA's FlashAttention-2 backward, CUDA-graph
# replay, one row per process, bf16.
# (the rows' loop: benchmarks/mma_source_ab_rows.sh; the template directories were removed after the run: see
# benchmarks/RESULTS.md "Nineteenth H200 session" for the commits that hold them)
LOG=bwd_mma_d256_p_early_ab_h200_$(date +%Y-%m-%d)_s19e.log DTYPES=bf16 DIMS=256 bash benchmarks/mma_source_ab_rows.sh \
  --extra benchmarks/ab_variants/p_early_all
