#!/bin/bash
# Twenty-sixth session (nvidia-h200): the causal N 16384 rows' block order again (s26a read blockIdx.x order and 128 MB
# groups +8..+11 % over the served 64 MB groups at D 128, s25d the other way): A/A, 128 MB, blockIdx.x order, every
# pair at once against the served tile, columns built shuffled and then served-last.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
G="grep -v -i warn\|no.tuned.config\|return.Impl"
for order in shuffled served-last; do
  for d in 128 64; do
    W=$([ $d = 128 ] && echo 64x128x12x2 || echo 64x64x8x2)
    timeout 120 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims $d --seqs 16384 \
      --build-order $order --alt $W,$W:MMA.HEAVY_GROUP_MB=128,$W:-HEAVY_FIRST,$W:MMA.HEAVY_GROUP_MB=100000 \
      2>&1 | $G | tee -a $OUT/bench_backward_graph_order_n16384_h200_${D}_s26c.log
  done
done
