#!/bin/bash
# Nineteenth session, first call (nvidia-h200): Q_ROTATE's and DQ_FIRST_STORE's float64 GPU tests and the tail split's
# (the same grids), then (if all pass) their A/B beside cuDNN on the non-causal D 64 / 128 rows, N 4096 and 16384,
# bf16 and fp16, each switch between two copies of off.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
SKIP_PIP=1 COMPILE_S=90 TESTS_S=150 BENCH_S=330 BENCH16K_S=0 AB_ARGS="--seqs 4096,16384 --causal false" \
  bash benchmarks/ab_run.sh benchmarks/bench_backward_rotate_store.py tests/test_backward_wgmma_rotate_store_gpu.py \
  tests/test_backward_wgmma_tail_split_gpu.py
D=$(date +%Y-%m-%d)
for f in compile tests bench; do mv $OUT/$f.log $OUT/backward_rotate_store_ab_h200_${D}_s19a_$f.log; done
