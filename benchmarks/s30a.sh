#!/bin/bash
# Thirtieth session (nvidia-h200): OWN_QUERIES (flash_bwd_mma's 2-D layouts take dV and dK over a warp's own queries
# from its registers, the other queries' P^T / dS^T from shared memory): its GPU tests, then an A/B by graph replay,
# alt1 on, alt2 an A/A copy of the mma column (D 128 non-causal serves the S form: there alt1 is a second A/A copy).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_own_gpu.py 2>&1 | tail -15 \
  | tee $OUT/own_queries_tests_h200_${D}_s30a.log
for order in shuffled served-last; do
  left=$((T0 + 560 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 190 ? left : 190 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --build-order $order \
    --alt mma:MMA.OWN_QUERIES,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_own_queries_h200_${D}_s30a.log
done
