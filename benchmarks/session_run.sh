#!/usr/bin/env bash
# This session's device checks, in parts that fit one call each:
#   two       the two-worker protocol run (issue 8, benchmarks/two_workers.sh)
#   sanitize  compute-sanitizer over one config per template (issue 6)
#   tests     every GPU test (pytest -m gpu)
# Usage on the GPU machine (carry .whl): bash benchmarks/session_run.sh two sanitize
# A short summary of each part comes last.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
export OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
summary=""
for part in "$@"; do
    t0=$(date +%s)
    case $part in
        two) bash benchmarks/two_workers.sh > "$OUT/two.log" 2>&1
             s=$(grep -E "^wall|ran once|FAILED|killed|never saw|exit status|lost:|^study|^[a-z_]+\|" "$OUT/two.log" | cut -c1-170) ;;
        sanitize) TOOLS="memcheck racecheck synccheck" timeout 200 bash benchmarks/sanitize.sh "$OUT/sanitize" \
                      > "$OUT/sanitize.log" 2>&1
                  s=$(tail -12 "$OUT/sanitize.log") ;;
        tests) timeout 420 python3 -m pytest -q -m gpu -p no:cacheprovider tests/ > "$OUT/tests.log" 2>&1
               s=$(grep -E "passed|failed|error|FAILED" "$OUT/tests.log" | tail -12) ;;
        *) s="unknown part $part" ;;
    esac
    summary+=$'\n'"===== $part ($(( $(date +%s) - t0 )) s)"$'\n'"$s"
done
echo "$summary"
