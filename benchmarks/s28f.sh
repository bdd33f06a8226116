#!/bin/bash
# Twenty-eighth session (nvidia-h200): flash_bwd_mma's S_ROWS (S, dP with the queries as rows, FlashAttention-2's
# form; ops/backward_kernels.S_ROWS, off): its float64 GPU tests again (the masked tile's bounds now two values a tile: D 128 causal spills 24 B, was 60), then the D 128 rows' A/B (alt1 on, alt2 an A/A
# copy of the mma column), bf16 and fp16, graph replay, both build orders.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
L=$OUT/s_rows_tests_h200_${D}_s28f.log
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_backward_mma_rows_gpu.py > $L 2>&1
tail -3 $L
for order in shuffled served-last; do
  timeout 170 python3 benchmarks/bench_backward_graph.py --rounds 9 --head-dims 128 --build-order $order \
    --alt mma:MMA.S_ROWS,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_mma_s_rows_h200_${D}_s28f.log
done
