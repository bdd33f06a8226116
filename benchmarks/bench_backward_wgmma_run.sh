#!/bin/bash
# One device call for flash_bwd_wgmma (helpers B, BW; issue 16): compile every timed config (in the background),
# float64 gradient checks (the split dQ schedule, the producer warpgroup, the pipelined stages 3, deterministic,
# the served path; TESTS_K filters, default leaves out the DQ_OWN_KEYS / DQ_BULK_REDUCE switches), then timing
# beside flash_bwd_mma and SDPA (N 4096, then bf16 D 128 N 16384); wgmma_ws / wgmma_pipe are left out if their
# gradient tests fail. Fits a 120 s call. Run from the repository root with $OUT set; BENCH_ARGS (e.g.
# --deterministic) go to the N 4096 table.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
timeout 30 python benchmarks/bench_backward_wgmma.py --precompile --dtypes bf16,fp16 ${BENCH_ARGS:-} > $OUT/compile.log 2>&1 &
timeout ${TESTS_S:-40} python -m pytest -q -n 8 -p no:cacheprovider --tb=line -rf tests/test_backward_wgmma_gpu.py \
  -k "${TESTS_K:-not dq_own_keys and not dq_bulk}" 2>&1 | grep -v Warning | tee $OUT/tests.log | tail -15
wait; tail -4 $OUT/compile.log
grep -q " passed" $OUT/tests.log || export BENCH_NO_WS=1 BENCH_NO_PIPE=1  # (the tests did not finish)
grep "FAILED\|ERROR" $OUT/tests.log | grep -q "producer" && export BENCH_NO_WS=1
grep "FAILED\|ERROR" $OUT/tests.log | grep -q "pipelined" && export BENCH_NO_PIPE=1
timeout ${BENCH_S:-45} python benchmarks/bench_backward_wgmma.py --dtypes bf16,fp16 --head-dims 128,64 ${BENCH_ARGS:-} 2>&1 | tee $OUT/bench.log | tail -12
timeout ${BENCH16K_S:-14} python benchmarks/bench_backward_wgmma.py --dtypes bf16 --head-dims 128 --seqs 16384 2>&1 | tee $OUT/bench16k.log | tail -4
