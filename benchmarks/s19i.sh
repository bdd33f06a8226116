#!/bin/bash
# Nineteenth session, last call (nvidia-h200): issue 16's bar rows at kernel level (benchmarks/bench_backward_graph.py:
# served backward, flash_bwd_mma, SDPA's cuDNN and FlashAttention-2 backward, all CUDA-graph replay), on the session's
# last code, after compiling the served and mma configs in parallel.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 90 python3 benchmarks/bench_backward.py --precompile --head-dims 64,128 > $OUT/precompile.log 2>&1
tail -1 $OUT/precompile.log
timeout 330 python3 benchmarks/bench_backward_graph.py 2>&1 | grep -v -i "warn\|no tuned config" \
  | tee $OUT/bench_backward_graph_h200_${D}_s19i.log
