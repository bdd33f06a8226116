#!/bin/bash
# Twentieth session, second call (nvidia-h200): ONE_CONSUMER's GPU tests again (the one-key case's check fixed) with
# Q_ROTATE / HEADS_INNER (TAIL_SPLIT's grid orders, new), then by graph replay, bf16 D 64, N 4k / 8k / 16k: the
# one-consumer tile (alt1), with Q_ROTATE (alt2), with HEADS_INNER (alt3), and the served tile with HEADS_INNER (alt4).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 200 python3 -m pytest -q -p no:cacheprovider -n 12 tests/test_backward_wgmma_one_consumer_gpu.py 2>&1 \
  | tail -4 | tee $OUT/one_consumer_tests_h200_${D}_s20b.log
timeout 300 python3 benchmarks/bench_backward_graph.py --dtypes bf16 --head-dims 64 --seqs 4096,8192,16384 \
  --one-consumer --alt 64x64x8x2,64x64x8x2:Q_ROTATE,64x64x8x2:HEADS_INNER,64x128x12x2:HEADS_INNER 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_orders_h200_${D}_s20b.log
