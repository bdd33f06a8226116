#!/bin/bash
# Twenty-sixth session (nvidia-h200): D 64 causal, the two-consumer tile (64x128, 12 warps) against the served
# one-consumer tile (64x64, 8 warps; A/A copy) now that both run heavy-first in groups (s20's comparison predates it),
# columns built shuffled and served-last.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
for order in shuffled served-last; do
  timeout 150 python3 benchmarks/bench_backward_graph.py --rounds 11 --causal true --head-dims 64 --build-order $order \
    --alt 64x128x12x2,64x64x8x2 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl" \
    | tee -a $OUT/bench_backward_graph_d64_causal_tiles_h200_${D}_s26g.log
done
