#!/bin/bash
# Nineteenth session (nvidia-h200): cuDNN's D 64 backward runs 64 x 64 tiles with one warpgroup a CTA (s19k's kernel
# name): our one-warpgroup bm64 bn64 w4 tile (no producer, 2-3 CTAs an SM) as column alt beside the served tile and
# cuDNN, by graph replay, bf16 D 64, N 4096 / 16384, non-causal and causal.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bench_backward_graph.py --dtypes bf16 --head-dims 64 --alt 64x64x4x2 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_bn64_h200_${D}_s19l.log
