#!/bin/bash
# Twenty-ninth session (nvidia-h200): the checks and the bar on the session's final product code (S_ROWS issues dP's
# product before the exps, served at D 128 non-causal): every GPU test outside the opt-in paged-space sweep, autoflash
# verify, then the bar (graph replay, 9 rounds) built shuffled and served last.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
SKIP_PIP=1 XDIST=15 TESTS_TIMEOUT=330 TESTS_K="not paged_space" FINAL_DEADLINE=$((T0 + 360)) \
  bash benchmarks/h200_final.sh tests verify
for f in tests verify; do cp $OUT/$f.log $OUT/${f}_h200_${D}_s29e.log; done
for order in shuffled served-last; do
  left=$((T0 + 585 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 110 ? left : 110 )) python3 benchmarks/bench_backward_graph.py --rounds 9 --build-order $order 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl" | tee -a $OUT/bench_backward_graph_bar_h200_${D}_s29e.log
done
