#!/bin/bash
# One device call for flash_bwd_wgmma (helper B, issue 16): compile, float64 gradient checks (every dQ
# schedule, the producer warpgroup, the served path), then timing beside flash_bwd_mma and SDPA (N 4096,
# then bf16 D 128 N 16384); wgmma_ws (where not the default) is left out if a gradient test fails. Fits a 120 s
# call. Run from the repository root with $OUT set; BENCH_ARGS (e.g. --deterministic) go to the N 4096 table.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 25 python benchmarks/bench_backward_wgmma.py --precompile --dtypes bf16,fp16 ${BENCH_ARGS:-} 2>&1 | tee $OUT/compile.log | tail -12
timeout 30 python -m pytest -q -n 12 -p no:cacheprovider --tb=line -rf tests/test_backward_wgmma_gpu.py 2>&1 \
  | grep -v Warning | tee $OUT/tests.log | tail -15
grep -q " passed" $OUT/tests.log && ! grep -q "failed\|error" $OUT/tests.log || export BENCH_NO_WS=1
timeout 40 python benchmarks/bench_backward_wgmma.py --dtypes bf16,fp16 --head-dims 128,64 ${BENCH_ARGS:-} 2>&1 | tee $OUT/bench.log | tail -12
timeout 15 python benchmarks/bench_backward_wgmma.py --dtypes bf16 --head-dims 128 --seqs 16384 2>&1 | tee $OUT/bench16k.log | tail -4
