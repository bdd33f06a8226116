#!/bin/bash
# Thirtieth session (nvidia-h200): OWN_DV + OWN_DK served at D 64 (s30a: +2 %), their GPU tests (both on, OWN_DK
# alone), then an A/B by graph replay: alt1 OWN_DK on at every tile dim (D 128 causal: dK's own share alone, which
# compiles clean where both spilled 8 B), alt2 both off (the kernel before them; D 128 non-causal: A/A copies).
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
timeout 150 python3 -m pytest -q -p no:cacheprovider -n 12 -rf tests/test_backward_mma_own_gpu.py 2>&1 | tail -8 \
  | tee $OUT/own_queries_tests_h200_${D}_s30b.log
for order in shuffled served-last; do
  left=$((T0 + 540 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 190 ? left : 190 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --build-order $order \
    --alt mma:MMA.OWN_DK,mma:-MMA.OWN_DV+-MMA.OWN_DK 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_own_dk_h200_${D}_s30b.log
done
