#!/bin/bash
# One device call for flash_bwd_wgmma's DQ_STAGE_ROTATE (helper BD; issue 16): compile the timed kernels in the
# background, the float64 gradient tests of it (tests/test_backward_wgmma_bd_gpu.py), then, only if they all pass,
# the A/B timing (benchmarks/bench_bd_rotate.py: the producer tile's dQ as per-row bulk ops (D 128's served kernel),
# one bulk op a tile (D 64's served kernel), and the same with the staging stores rotated by 1 and 2 rounds of
# selects, D 64/128 N 4096 bf16/fp16, causal and not, beside SDPA cuDNN; then bf16 D 128 N 16384). Fits a ~140 s
# call. Run from the repository root with $OUT set, carry=[".whl"].
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 40 python benchmarks/bench_bd_rotate.py --precompile > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-50} python -m pytest -q -n 8 -p no:cacheprovider --tb=short -rf \
  tests/test_backward_wgmma_bd_gpu.py 2>&1 | grep -v Warning | tee $OUT/tests.log | tail -12
wait; tail -24 $OUT/compile.log | grep -v " 0 B spilled" ; grep -c " 0 B spilled" $OUT/compile.log
grep -q " passed" $OUT/tests.log && ! grep -q "FAILED\|ERROR" $OUT/tests.log || { echo "tests did not all pass: no timing"; exit 1; }
timeout ${BENCH_S:-55} python benchmarks/bench_bd_rotate.py 2>&1 | tee $OUT/bench.log | tail -11
timeout ${BENCH16K_S:-25} python benchmarks/bench_bd_rotate.py --dtypes bf16 --head-dims 128 --seqs 16384 2>&1 \
  | tee $OUT/bench16k.log | tail -4
