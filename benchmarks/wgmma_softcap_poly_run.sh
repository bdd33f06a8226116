#!/bin/bash
# One device call (<= 150 s) for flash_fwd_wgmma's SOFTCAP_POLY switch (helper SX, issue 17: P's exp2 of K of each
# thread's 32 columns a row by an FMA-pipe polynomial instead of MUFU): compile the timed kernels in the background,
# the float64 GPU tests with the switch on (tests/test_wgmma_softcap_poly_gpu.py: D 64/128, bf16/fp16, causal both
# alignments, window + sinks, softcap 5/30/50, logits to +-1e4, rows without a key, varlen; K 16 and 32), then, only
# if they all pass (none failed, errored or skipped), the A/B (benchmarks/wgmma_softcap_poly_ab.py --check: served
# softcap kernel vs K 16 and K 24 vs served again (A/A) beside served plain; bf16 D 128/64, causal and not, N 4096
# then 16384; graph replay, 7 interleaved rounds).
# Run from the repository root with $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the steps.)
export COMPILE_S=${COMPILE_S:-45} TESTS_S=${TESTS_S:-75} BENCH_S=${BENCH_S:-55} BENCH16K_S=0 \
  AB_ARGS=${AB_ARGS:---check}
bash benchmarks/ab_run.sh benchmarks/wgmma_softcap_poly_ab.py tests/test_wgmma_softcap_poly_gpu.py
