#!/bin/bash
# Twenty-ninth session (nvidia-h200): S_ROWS_DP_FIRST alone at the served S-form tile (D 128 non-causal), s29c's
# +0.5..+4.4 % there (7 of 8 readings over the A/A copy) read again: alt1 dP first, alt2 an A/A copy of the served mma
# column; bf16 and fp16, graph replay, 9 rounds, both build orders, twice.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
for order in shuffled served-last shuffled served-last; do
  timeout 130 python3 benchmarks/bench_backward_graph.py --rounds 9 --head-dims 128 --causal false --build-order $order \
    --alt mma:MMA.S_ROWS_DP_FIRST,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_mma_dp_first_d128_h200_${D}_s29d.log
done
