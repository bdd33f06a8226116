#!/bin/bash
# Twenty-first session (nvidia-h200), PERSISTENT on: the per-call table (bench_backward.py, README's), a second graph
# reading of the bar with the served column built last, and a block's fixed cost at D 128 (the next lever's size).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --served-last 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_served_last_h200_${D}_s21f.log
timeout 60 python3 benchmarks/bwd_unit_cost.py --rounds 5 --head-dim 128 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bwd_unit_cost_d128_h200_${D}_s21f.log
timeout 180 python3 benchmarks/bench_backward.py --head-dims 64,128 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 \
  --no-det > $OUT/bench_backward_h200_${D}_s21f.log 2>&1; tail -18 $OUT/bench_backward_h200_${D}_s21f.log
