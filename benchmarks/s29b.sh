#!/bin/bash
# Twenty-ninth session (nvidia-h200): flash_bwd_mma's S_ROWS at D 64 (0 B spilled since P sits beside dS; its float64
# tests passed in s29a): A/B as mma columns (alt1 S_ROWS at every head dim, alt2 an A/A copy of the served mma column),
# non-causal, bf16 and fp16, graph replay, both build orders.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
for order in shuffled served-last; do
  timeout 270 python3 benchmarks/bench_backward_graph.py --rounds 9 --head-dims 64 --causal false --build-order $order \
    --alt mma:MMA.S_ROWS,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_mma_s_rows_d64_h200_${D}_s29b.log
done
