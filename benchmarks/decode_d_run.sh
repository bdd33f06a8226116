#!/usr/bin/env bash
# Helper D's H200 calls (fourth session): the paged-space GPU test on the keys given (default: the one
# whose tune faulted), then the decode rows the split changes move, and any pytest files given in TESTS.
#   OUT=/tmp/o KEYS="bf16-d64-mt1" ROWS="d64 32/8 b1 n1024,..." bash benchmarks/decode_d_run.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/decode_d}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
KEYS=${KEYS:-bf16-d64-mt1}
t0=$(date +%s)
timeout "${T_SPACE:-55}" python3 -m pytest -q -x -n 16 -p no:cacheprovider tests/test_paged_space_gpu.py -k "$KEYS" \
    > "$OUT/paged_space.log" 2>&1
echo "paged space ($KEYS): rc $? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/paged_space.log")"
grep -m3 -E "^(FAILED|E  )" "$OUT/paged_space.log"
if [ -n "${TESTS:-}" ]; then
    t0=$(date +%s)
    timeout "${T_TESTS:-40}" python3 -m pytest -q -x -n 8 -p no:cacheprovider $TESTS > "$OUT/tests.log" 2>&1
    echo "tests: rc $? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/tests.log")"
    grep -m3 -E "^(FAILED|E  )" "$OUT/tests.log"
fi
if [ -n "${ROWS:-}" ]; then
    t0=$(date +%s)
    timeout "${T_BENCH:-50}" python3 benchmarks/bench_decode.py --rounds 3 --rows "$ROWS" --json "$OUT/bench_decode.json" \
        > "$OUT/bench_decode.log" 2>&1
    echo "bench_decode: rc $? in $(( $(date +%s) - t0 )) s"
    tail -n 20 "$OUT/bench_decode.log"
fi
if [ -n "${PROBE:-}" ]; then
    t0=$(date +%s)
    timeout "${T_PROBE:-25}" python3 benchmarks/decode_split_probe.py > "$OUT/split_probe.log" 2>&1
    echo "split probe: rc $? in $(( $(date +%s) - t0 )) s"
    grep -v Warning "$OUT/split_probe.log" | grep -v "return F" | tail -n 10
fi
