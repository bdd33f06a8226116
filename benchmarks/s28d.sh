#!/bin/bash
# Twenty-eighth session (nvidia-h200): the bar on the session's final code (every walk from the counter; graph replay, 11 rounds),
# columns built shuffled, then served last.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
for order in shuffled served-last; do
  timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --build-order $order 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl" | tee -a $OUT/bench_backward_graph_bar_h200_${D}_s28d.log
done
