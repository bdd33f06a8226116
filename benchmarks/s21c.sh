#!/bin/bash
# Twenty-first session (nvidia-h200): does the served column read low because it is built (its outputs and workspace
# allocated) first? The bar's rows with the served column built LAST (--served-last) and two copies of the
# two-consumer tile (alt1, alt2) built before it; shuffled order, 15 rounds; bf16 D 64 / 128, fp16 D 128.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
for args in "--dtypes bf16 --head-dims 64,128" "--dtypes fp16 --head-dims 128"; do
  timeout 280 python3 benchmarks/bench_backward_graph.py --rounds 15 --served-last $args \
    --alt 64x128x12x2,64x128x12x2 2>&1 | grep -v -i "warn\|no tuned config\|return Impl"
done | tee $OUT/bench_backward_graph_served_last_h200_${D}_s21c.log
