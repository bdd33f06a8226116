#!/bin/bash
# Twenty-ninth session (nvidia-h200): a second reading of the bar on the final code (s29e's shuffled reading, 12 of 16,
# was the lowest of the last three sessions): graph replay, 11 rounds, shuffled then served last.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
for order in shuffled served-last; do
  left=$((T0 + 230 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 160 ? left : 160 )) python3 benchmarks/bench_backward_graph.py --rounds 11 --build-order $order 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl" | tee -a $OUT/bench_backward_graph_bar_h200_${D}_s29f.log
done
