#!/bin/bash
# Twenty-fourth session, second call (nvidia-h200): DQ_FREE_ON_FULL against two A/A copies, 21 rounds, D 64 non-causal
# (the only rows the walk serves), columns alt1 = alt3 = switch on, alt2 = alt4 = served tile as is.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 300 python3 benchmarks/bench_backward_graph.py --rounds 21 --head-dims 64 --causal false \
  --alt 64x128x12x2:DQ_FREE_ON_FULL,64x128x12x2,64x128x12x2:DQ_FREE_ON_FULL,64x128x12x2 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_dq_free_on_full_h200_${D}_s24b.log
