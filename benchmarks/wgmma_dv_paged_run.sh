#!/bin/bash
# One device call for flash_fwd_wgmma's Dqk != Dv (issue 17 item 2) and, later, paged K/V (issue 15):
# fill the kernel cache in the background, run the GPU tests, then time (paged_dv_probe.py), short summary last.
# Run from the repository root with the project on PYTHONPATH; logs go to $OUT.
#   STEPS="dv" bash benchmarks/wgmma_dv_paged_run.sh
#   STEPS="paged" XDIST="-n 8" bash benchmarks/wgmma_dv_paged_run.sh
export AUTOFLASH_CACHE_DIR=${AUTOFLASH_CACHE_DIR:-/tmp/afcache} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/wgmma_dv_out}
mkdir -p "$OUT"
STEPS=${STEPS:-dv}
PARTS=""
[[ $STEPS == *paged* ]] && PARTS="$PARTS paged"
[[ $STEPS == *dv* ]] && PARTS="$PARTS dv"
python3 benchmarks/paged_dv_probe.py --parts $PARTS --compile-only > "$OUT/compile.log" 2>&1 &
compiling=$!
TESTS=""
[[ $STEPS == *dv* ]] && TESTS="$TESTS tests/test_wgmma_dv_gpu.py tests/test_head_dim_v_gpu.py"
[[ $STEPS == *paged* ]] && TESTS="$TESTS tests/test_wgmma_paged_gpu.py tests/test_paged_prefill_gpu.py"
TESTS=${TESTS_ONLY:-$TESTS}  # e.g. TESTS_ONLY=tests/test_wgmma_paged_gpu.py
timeout "${TESTS_S:-55}" python3 -m pytest -q ${XDIST:-} --maxfail=15 -p no:cacheprovider $TESTS > "$OUT/tests.log" 2>&1
echo "tests exit $? (124: cut by the timeout)"
wait $compiling
echo "compiled: $(grep -c ' B spilled' "$OUT/compile.log") configs; spilling or failed:"
grep -E "Error|error|spilled" "$OUT/compile.log" | grep -v " 0 B spilled" | head -5
timeout "${PROBE_S:-45}" python3 benchmarks/paged_dv_probe.py --parts $PARTS --rounds 3 --reps 10 2>&1 \
    | grep -v "^autoflash: no tuned" > "$OUT/probe.log"
echo "probe exit ${PIPESTATUS[0]}"
cat "$OUT/probe.log"
echo "---- tests (last lines)"
grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -15
