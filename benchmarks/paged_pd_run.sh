#!/bin/bash
# Helper PD's device call (2026-11-29, fifth session): the paged look-up GPU tests, bench_kvcache's decode part,
# and bench_decode --paged-choice, each under its own timeout (T_TESTS, T_KV, T_CHOICE seconds), logs in $OUT.
export PYTHONUNBUFFERED=1
OUT=${OUT:-.}
timeout ${T_TESTS:-35} python3 -m pytest -q -x -n 8 -p no:cacheprovider tests/test_paged_lookup_gpu.py ${TESTS_EXTRA} \
    > "$OUT/pd_tests.log" 2>&1; echo "tests rc $?" >> "$OUT/pd_tests.log"
timeout ${T_KV:-45} python3 benchmarks/bench_kvcache.py --parts decode --rounds 3 --json "$OUT/pd_kvcache.json" \
    > "$OUT/pd_kvcache.log" 2>&1; echo "bench_kvcache rc $?" >> "$OUT/pd_kvcache.log"
[ "${T_CHOICE:-25}" -gt 0 ] && { timeout ${T_CHOICE:-25} python3 benchmarks/bench_decode.py --paged-choice \
    > "$OUT/pd_choice.log" 2>&1; echo "paged-choice rc $?" >> "$OUT/pd_choice.log"; }
tail -4 "$OUT/pd_tests.log"; grep -A9 "^row " "$OUT/pd_kvcache.log" | tail -9; grep "paged >=\|rc " "$OUT/pd_kvcache.log"
grep -E "contiguous|page|rc " "$OUT/pd_choice.log" 2>/dev/null | head -60
