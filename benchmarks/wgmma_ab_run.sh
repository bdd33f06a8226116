#!/usr/bin/env bash
# One device call for an A/B of a template switch (benchmarks/wgmma_ab.py VARIANT_VALUES): graph-replay
# timing of the variants against cuDNN (first, on a card that was idle), ncu of the variants and cuDNN on
# the bf16 headline rows, then correctness (ab checks, probe --checks-only, GPU + wgmma tests). Logs under $OUT.
# Usage on the GPU machine (carry .whl): bash benchmarks/wgmma_ab_run.sh [variants, e.g. base,pp1] [rounds] [quick]
# (correctness runs on the last variant named; the probe and pytest use the committed template values,
# so "quick" leaves them out while the change is not the default yet)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
variants=${1:-base}
rounds=${2:-9}
quick=${3:-}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,temperature.gpu,clocks.sm,power.draw --format=csv,noheader
# timing first, on a cool card state as in the baseline run
timeout 150 python3 benchmarks/wgmma_ab.py --time --rows more --rounds "$rounds" --variants "$variants" > "$OUT/time.txt" 2>&1
echo "time rc=$?"
timeout 120 "$NCU" --clock-control none --profile-from-start off \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
  --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
  -f -o "$OUT/ab" python3 benchmarks/wgmma_ab.py --profile --variants "$variants" > "$OUT/ncu.log" 2>&1
echo "ncu rc=$?"
"$NCU" --import "$OUT/ab.ncu-rep" --page raw --csv > /tmp/raw.csv 2>/dev/null
gzip -c /tmp/raw.csv > "$OUT/raw.csv.gz"
python3 benchmarks/ncu_summary.py /tmp/raw.csv | grep -E "===|gpu__time|hmma_cycles_active.avg.pct_of_peak_sustained_active|pipe_(xu|fma|alu)|issue_active|eligible|stalls" > "$OUT/ncu_summary.txt"
timeout 200 python3 benchmarks/wgmma_ab.py --check --variants "${variants##*,}" > "$OUT/abcheck.txt" 2>&1
echo "ab check rc=$?"; tail -1 "$OUT/abcheck.txt"
if [ -z "$quick" ]; then
  timeout 200 python3 benchmarks/wgmma_probe.py --checks-only > "$OUT/probe_checks.txt" 2>&1
  echo "probe checks rc=$?"; grep -E "FAIL|checks done" "$OUT/probe_checks.txt"
  timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py -k wgmma tests/test_wgmma.py > "$OUT/pytest.txt" 2>&1
  echo "pytest rc=$?"; tail -3 "$OUT/pytest.txt"
fi
cat "$OUT/ncu_summary.txt"
tail -22 "$OUT/time.txt"
