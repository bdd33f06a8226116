#!/bin/bash
# One device call for flash_fwd_wgmma's varlen scheduling, softcap and ALiBi changes (issues 15, 17):
# fill the kernel cache in the background, run the wgmma GPU tests, then time the kernels.
# Run from the repository root with the project on PYTHONPATH; logs go to $OUT.
#   STEPS="tests schedule variants varlen" bash benchmarks/wgmma_schedule_run.sh
export AUTOFLASH_CACHE_DIR=${AUTOFLASH_CACHE_DIR:-/tmp/afcache} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/wgmma_schedule_out}
mkdir -p "$OUT"
STEPS=${STEPS:-tests schedule variants}
python3 benchmarks/wgmma_schedule_bench.py --compile-only > "$OUT/compile.log" 2>&1 &
compiling=$!
if [[ $STEPS == *tests* ]]; then
    timeout "${TESTS_S:-45}" python3 -m pytest -q -n 8 --maxfail=10 -p no:cacheprovider -k wgmma \
        tests/test_wgmma_schedule_gpu.py tests/test_varlen_gpu.py tests/test_variants_gpu.py > "$OUT/tests.log" 2>&1
    echo "tests exit $? (124: cut by the timeout)"
fi
wait $compiling
echo "compiled: $(grep -c ' B spilled' "$OUT/compile.log") configs; spilling or failed:"
grep -E "FAILED|spilled" "$OUT/compile.log" | grep -v " 0 B spilled"
if [[ $STEPS == *schedule* ]]; then
    timeout "${SCHEDULE_S:-20}" python3 benchmarks/wgmma_schedule_bench.py --variants window softcap alibi --rounds 3 2>&1 \
        | grep -v "^autoflash: no tuned" | tee "$OUT/schedule.log"
fi
if [[ $STEPS == *varlen* ]]; then
    timeout "${VARLEN_S:-30}" python3 benchmarks/bench_varlen.py --rounds 2 --json "$OUT/bench_varlen.json" \
        > "$OUT/bench_varlen.log" 2>&1
    tail -20 "$OUT/bench_varlen.log"
fi
if [[ $STEPS == *variants* ]]; then
    timeout "${VARIANTS_S:-25}" python3 benchmarks/bench_variants.py --no-flex --head-dims ${VARIANT_DIMS:-128} \
        --seqs ${VARIANT_SEQS:-4096} --variants softcap alibi window --rounds 3 --reps 5 --json "$OUT/variants.json" \
        > "$OUT/variants.log" 2>&1
    grep -A12 "^variant " "$OUT/variants.log" || tail -5 "$OUT/variants.log"
fi
if [[ $STEPS == *tests* ]]; then
    echo "---- tests (last lines)"
    grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
    grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -12
fi
