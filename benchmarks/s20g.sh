#!/bin/bash
# Twentieth session, last call (nvidia-h200): second readings of s20f's two figures that moved against the
# eighteenth session's: the training step (0.99x SDPA's default, spread 7 %) and the D 64 graph rows (11 rounds).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
timeout 150 python3 benchmarks/bench_training.py --quick --json $OUT/training.json > $OUT/bench_training_h200_${D}_s20g.log 2>&1
tail -8 $OUT/bench_training_h200_${D}_s20g.log
timeout 200 python3 benchmarks/bench_backward_graph.py --rounds 11 --head-dims 64 2>&1 \
  | grep -v -i "warn\|no tuned config\|return Impl" | tee $OUT/bench_backward_graph_d64_h200_${D}_s20g.log
