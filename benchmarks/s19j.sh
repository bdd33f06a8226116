#!/bin/bash
# Nineteenth session, a confirmation (nvidia-h200): s19i's kernel-level bar rows again, bf16 only, 11 rounds.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 90 python3 benchmarks/bench_backward.py --precompile --head-dims 64,128 > $OUT/precompile.log 2>&1
timeout 240 python3 benchmarks/bench_backward_graph.py --dtypes bf16 --rounds 11 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_h200_${D}_s19j.log
