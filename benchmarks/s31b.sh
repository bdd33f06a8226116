#!/bin/bash
# Prepared in the thirtieth session for the next (nvidia-h200; not run): LINE_COPIES (flash_bwd_mma's cp.async copies
# walk the padded tiles' 16-byte slots so each quarter-warp writes one aligned 128-byte line; s30g: copies by data chunk
# took 10.5 shared wavefronts each against 4, 7.5 % of the D 128 kernels' shared wavefronts). Its GPU tests, then an
# A/B on every bar row: alt1 on at every tile dim (D 128 causal spills 20 B with it: read, not served), alt2 A/A.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
timeout 120 python3 -m pytest -q -p no:cacheprovider -n 12 -rf tests/test_backward_line_copies_gpu.py 2>&1 | tail -8 \
  | tee $OUT/line_copies_tests_h200_${D}_s31b.log
for order in shuffled served-last; do
  left=$((T0 + 450 - $(date +%s))); [ $left -gt 60 ] || break
  timeout $(( left < 170 ? left : 170 )) python3 benchmarks/bench_backward_graph.py --rounds 7 --build-order $order \
    --alt mma:MMA.LINE_COPIES,mma 2>&1 | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt" \
    | tee -a $OUT/bench_backward_graph_line_copies_h200_${D}_s31b.log
done
