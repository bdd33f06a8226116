#!/bin/bash
# Nineteenth session, eighth call (nvidia-h200): P^T stored early at D 256 with the served warps_q 4 layout? The
# served template (P^T late at D 256) against the template of 5703c1f (benchmarks/ab_templates/: the same order) and
# an A/A copy, with p_early_all as an extra column, beside SDPA's FlashAttention-2 backward, graph replay, bf16.
# (the rows' loop: benchmarks/mma_source_ab_rows.sh; the template directories were removed after the run: see
# benchmarks/RESULTS.md "Nineteenth H200 session" for the commits that hold them)
LOG=bwd_mma_d256_wq4_p_early_ab_h200_$(date +%Y-%m-%d)_s19h.log DTYPES=bf16 DIMS=256 bash benchmarks/mma_source_ab_rows.sh \
  --extra benchmarks/ab_variants/p_early_all
