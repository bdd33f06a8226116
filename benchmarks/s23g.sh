#!/bin/bash
# Twenty-third session (nvidia-h200): a second bar reading on the final tree (shuffled build order), the per-call
# table and the training step (s23f read the graph table with served built last).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_h200_${D}_s23g.log
timeout 150 python3 benchmarks/bench_backward.py --head-dims 64,128 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 \
  --no-det > $OUT/bench_backward_h200_${D}_s23g.log 2>&1; tail -18 $OUT/bench_backward_h200_${D}_s23g.log
timeout 130 python3 benchmarks/bench_training.py --quick --json $OUT/training.json > $OUT/bench_training_h200_${D}_s23g.log 2>&1
tail -12 $OUT/bench_training_h200_${D}_s23g.log
