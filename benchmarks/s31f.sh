#!/bin/bash
# Thirty-first session (nvidia-h200): s30e's Nsight Compute profile (flash_bwd_mma and SDPA's FlashAttention-2
# backward, bf16 D 128 N 16384, causal and non-causal) again, on the served code (HEAVY_BY_BATCH + DQ_INTERLEAVE at
# D 128 causal). Run as it ran then: it is s30e.sh with the tag s31f.
TAG=s31f exec bash benchmarks/s30e.sh
