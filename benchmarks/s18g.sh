#!/bin/bash
# Eighteenth session, seventh call (nvidia-h200): TAIL_SPLIT's float64 GPU tests, then (if all pass) its A/B beside
# cuDNN on the D 64 rows (N 4096 and 16384, bf16 and fp16, causal both), the switch between two copies of off.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
SKIP_PIP=1 COMPILE_S=60 TESTS_S=120 BENCH_S=240 BENCH16K_S=0 AB_ARGS="--seqs 4096,16384" \
  bash benchmarks/ab_run.sh benchmarks/bench_backward_tail_split.py tests/test_backward_wgmma_tail_split_gpu.py
D=$(date +%Y-%m-%d)
for f in compile tests bench; do mv $OUT/$f.log $OUT/backward_tail_split_ab_h200_${D}_s18g_$f.log; done
