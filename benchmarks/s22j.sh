#!/bin/bash
# Twenty-second session (nvidia-h200): a third reading of the bar on the session's final kernels (graph replay,
# shuffled build order, as s22g's first).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_h200_${D}_s22j.log
