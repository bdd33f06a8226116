#!/bin/bash
# One device call for ops/backward_wgmma.HEAVY_FIRST (issue 16: the decoder step's causal backward; ~150 s): compile the
# A/B's kernels in the background, tests/test_backward_wgmma_heavy_first_gpu.py (float64 and switch-off equality),
# then, only if they all pass, the A/B at the decoder step's shape (bf16 D 64/128 N 4096, 8k tokens: B 2 x 16 heads)
# and at bench_backward's (16k tokens). Run from the repository root with $OUT set, carry=[".whl"]. Logs: $OUT/*.log.
export COMPILE_S=40 TESTS_S=70 BENCH_S=40 BENCH16K_S=0 AB_ARGS="--dtypes bf16 --tokens 8192"
bash benchmarks/ab_run.sh benchmarks/bench_backward_heavy_first.py tests/test_backward_wgmma_heavy_first_gpu.py || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests AUTOFLASH_CACHE_DIR=/tmp/afcache
timeout 40 python3 benchmarks/bench_backward_heavy_first.py --dtypes bf16 2>&1 | tee $OUT/bench_16k_tokens.log | grep "^|"
