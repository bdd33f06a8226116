#!/bin/bash
# Twentieth session's last call, GPU 1 (beside the GPU suite and verify on GPU 0: benchmarks/suite_beside_x2.sh):
# issue 16's bar by graph replay on the session's entries (D 64 re-tuned at the bar's size: one-consumer tiles on 5 of
# 8 keys), the training step, then the per-call table (no deterministic column).
export PYTHONPATH=$PWD:$PWD/benchmarks:$PWD/tests:/tmp/site PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/autoflash-cache
D=$(date +%Y-%m-%d)
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 9 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  > $OUT/bench_backward_graph_h200_${D}_s20f.log; cat $OUT/bench_backward_graph_h200_${D}_s20f.log
timeout 130 python3 benchmarks/bench_training.py --quick --json $OUT/training.json > $OUT/bench_training_h200_${D}_s20f.log 2>&1
tail -12 $OUT/bench_training_h200_${D}_s20f.log
timeout 180 python3 benchmarks/bench_backward.py --head-dims 64,128 --seqs 4096,16384 --dtypes bf16,fp16 --rounds 3 \
  --no-det > $OUT/bench_backward_h200_${D}_s20f.log 2>&1; tail -18 $OUT/bench_backward_h200_${D}_s20f.log
