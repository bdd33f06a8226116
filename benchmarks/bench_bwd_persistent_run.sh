#!/bin/bash
# One device call for flash_bwd_wgmma's PERSISTENT switch (helper PB; issue 16): compile the timed kernels in the
# background, the float64 gradient tests (tests/test_backward_wgmma_persistent_gpu.py: 32 runs), then, only if they
# all pass, the A/B timing (benchmarks/bench_bwd_persistent.py: served vs persistent, D 64/128 N 4096 bf16/fp16, causal
# and not, beside SDPA cuDNN), then bf16 D 64 / D 128 N 16384. Fits a 150 s call. Run from the repository root with
# $OUT set, carry=[".whl"]. (benchmarks/ab_run.sh does the first steps; its own N 16384 run is D 128 only: off here)
TESTS_S=${TESTS_S:-50} BENCH_S=${BENCH_S:-45} BENCH16K_S=0 \
  bash benchmarks/ab_run.sh benchmarks/bench_bwd_persistent.py tests/test_backward_wgmma_persistent_gpu.py || exit 1
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests
timeout ${LONG_S:-28} python benchmarks/bench_bwd_persistent.py --dtypes bf16 --head-dims 64,128 --seqs 16384 2>&1 \
  | tee $OUT/bench16k.log | grep "^|"
