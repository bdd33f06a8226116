#!/bin/bash
# Twenty-ninth session (nvidia-h200): S_ROWS_DP_FIRST (dP's product before the exps, FA2's order) with S_ROWS_CAUSAL
# (causal keys in the S form; with dP first every D 64 / D 128 tile compiles 0 B spilled): their float64 GPU tests,
# then an A/B as mma columns on every bar row (alt1 both on with S_ROWS at every head dim, alt2 an A/A copy of the
# served mma column), graph replay, 9 rounds, both build orders.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
L=$OUT/s_rows_dp_first_tests_h200_${D}_s29c.log
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 15 tests/test_backward_mma_rows_gpu.py > $L 2>&1
tail -3 $L
grep -q " passed" $L && ! grep -q "failed" $L || exit 1
for order in shuffled served-last; do
  timeout 220 python3 benchmarks/bench_backward_graph.py --rounds 9 --build-order $order \
    --alt mma:MMA.S_ROWS+MMA.S_ROWS_DP_FIRST+MMA.S_ROWS_CAUSAL,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_mma_dp_first_h200_${D}_s29c.log
done
