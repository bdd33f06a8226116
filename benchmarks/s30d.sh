#!/bin/bash
# Thirtieth session (nvidia-h200): OWN_DV + OWN_DK at D 256 (warps_q 4: a warp's own quarter of the queries from
# registers; served off there): alt1 both on at every tile dim, alt2 an A/A copy of the mma column; graph replay.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
for order in shuffled served-last; do
  left=$((T0 + 330 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 160 ? left : 160 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --head-dims 256 \
    --build-order $order --alt mma:MMA.OWN_DV+MMA.OWN_DK,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_own_d256_h200_${D}_s30d.log
done
