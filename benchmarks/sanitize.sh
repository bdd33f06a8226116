#!/usr/bin/env bash
# compute-sanitizer over one config of each template on a small problem (the tools
# slow kernels ~100x), plus a positive control: the test-only kernel that writes out
# of bounds, which memcheck must report. NVRTC cubins carry no line info, so a report
# names the kernel and a SASS offset, not a source line.
#
# Usage, from anywhere:  benchmarks/sanitize.sh [LOG_DIR]
#   TOOLS="memcheck racecheck synccheck" benchmarks/sanitize.sh   (default: memcheck racecheck)
# Prints a table last: target, tool, errors the sanitizer counted (all, and those reported
# inside the kernel), racecheck's hazards, the program's own check against float64.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
TOOLS=${TOOLS:-"memcheck racecheck"}
TARGETS="flash_fwd_simt flash_fwd_mma flash_fwd_wgmma fault_test_oob"
LOGS=${1:-$(mktemp -d)}
mkdir -p "$LOGS"

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ ! -x "$SAN" ]; then
    echo "compute-sanitizer not found on PATH or in /usr/local/cuda/bin" >&2
    exit 2
fi
echo "$SAN: $("$SAN" --version | tail -1)"

# Compile first, outside the sanitizer: the sanitized runs then load the disk cache.
for t in $TARGETS; do
    $PY benchmarks/sanitize_run.py "$t" --compile-only || exit 1
done

# Instrument only our kernels, not CuPy's (random inputs, the float64 reference).
# Not for initcheck: filtered, it reported CuPy-written inputs as uninitialized (74598
# reports for simt, 2026-11-25), most likely as it never saw CuPy's kernels write them.
# initcheck unfiltered has not been run.
filter_for() {  # TARGET TOOL
    [ "$2" = initcheck ] && return
    "$SAN" --help 2>/dev/null | grep -q -- "--kernel-name " || return
    if [ "$1" = fault_test_oob ]; then echo "--kernel-name kns=fault_test"; else echo "--kernel-name kns=flash_fwd"; fi
}
echo "kernel filter: $(filter_for flash_fwd_simt memcheck)"

rows=()
for t in $TARGETS; do
    for tool in $TOOLS; do
        log="$LOGS/$t.$tool.log"
        start=$SECONDS
        # shellcheck disable=SC2046  # the filter is two words or none
        "$SAN" --tool "$tool" $(filter_for "$t" "$tool") $PY benchmarks/sanitize_run.py "$t" >"$log" 2>&1
        rc=$?
        # memcheck ends with "ERROR SUMMARY: N errors", racecheck with "... hazards displayed (N errors, M warnings)"
        errors=$(grep -oE '(ERROR SUMMARY: |\()[0-9]+ error' "$log" | grep -oE '[0-9]+' | tail -1)
        # what the tool saw inside the kernel, as opposed to the API errors that follow a fault
        in_kernel=$(grep -cE '^========= (Invalid|Uninitialized|Error:|Warning:)' "$log")
        hazards=$(grep -oE 'RACECHECK SUMMARY: [0-9]+ hazard' "$log" | grep -oE '[0-9]+' | tail -1)
        result=$(grep -oE '^RESULT .*' "$log" | cut -c8-75 | tail -1)
        rows+=("$t|$tool|${errors:-none printed}|$in_kernel|${hazards:--}|${result:-no result (exit $rc)}"\
"|$((SECONDS - start)) s")
        echo "$t $tool: errors ${errors:-?}, exit $rc, log $log"
    done
done

echo
echo "| target | tool | errors | in the kernel | racecheck hazards | program's check | wall |"
echo "|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "| ${r//|/ | } |"; done
