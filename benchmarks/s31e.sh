#!/bin/bash
# Thirty-first session (nvidia-h200), one call for what the device time left allows (s31c and s31d folded together
# after two refused starts): the final code's GPU suite (outside the opt-in paged-space sweep) and autoflash verify,
# the bar served last, one shuffled A/B of OWN_DV / OWN_DK at D 128 causal on the by-batch kernels (alt1 both, alt2
# OWN_DK alone, alt3 an A/A copy; no GPU tests of it in this call), then the bar shuffled in the time left.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d); T0=$(date +%s)
SKIP_PIP=1 XDIST=15 TESTS_TIMEOUT=330 TESTS_K="not paged_space" FINAL_DEADLINE=$((T0 + 380)) \
  bash benchmarks/h200_final.sh tests verify
for f in tests verify; do cp $OUT/$f.log $OUT/${f}_h200_${D}_s31e.log; done
grep -E "passed|failed" $OUT/tests.log | tail -2; tail -3 $OUT/verify.log
bar() {
  left=$((T0 + ${END:-585} - $(date +%s))); [ $left -gt 50 ] || return  # (END: seconds after the pip line)
  timeout $(( left < 110 ? left : 110 )) python3 benchmarks/bench_backward_graph.py --rounds 7 "$@" 2>&1 \
    | grep -v -i "warn\|no.tuned.config\|return.Impl\|^# alt"
}
bar --build-order served-last | tee -a $OUT/bench_backward_graph_bar_h200_${D}_s31e.log
bar --build-order shuffled --causal true --alt mma:MMA.OWN_DV+MMA.OWN_DK,mma:MMA.OWN_DK,mma \
  | tee -a $OUT/bench_backward_graph_own_d128_h200_${D}_s31e.log
bar --build-order shuffled | tee -a $OUT/bench_backward_graph_bar_h200_${D}_s31e.log
