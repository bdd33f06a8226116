#!/usr/bin/env bash
# One device call: Nsight Compute over the tuned bf16 D128 N4096 wgmma kernels (non-causal, causal)
# and SDPA's cuDNN kernels for the same inputs, then a graph-replay timing (benchmarks/wgmma_ab.py).
# Usage on the GPU machine (carry .whl): bash benchmarks/wgmma_ncu.sh [variants] [source]
# With "source": only our kernels, SourceCounters (warp-stall PC sampling per SASS instruction) +
# WarpStateStats; the per-instruction table goes to $OUT/source.csv.gz, summed by opcode in source_summary.txt.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
variants=${1:-base}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
if [ "${2:-}" = source ]; then
  timeout 240 "$NCU" --clock-control none --profile-from-start off --kernel-name regex:flash_fwd_wgmma \
    --section SourceCounters --section WarpStateStats --import-source no \
    -f -o /tmp/src python3 benchmarks/wgmma_ab.py --profile --variants "$variants" > "$OUT/ncu_source.log" 2>&1
  echo "ncu source rc=$?"
  "$NCU" --import /tmp/src.ncu-rep --page source --csv --print-source sass > /tmp/source.csv 2> "$OUT/source_export.err"
  echo "export rc=$? $(wc -l < /tmp/source.csv) lines"
  gzip -c /tmp/source.csv > "$OUT/source.csv.gz"
  python3 benchmarks/ncu_summary.py --source /tmp/source.csv > "$OUT/source_summary.txt" 2>&1
  cat "$OUT/source_summary.txt"
  exit 0
fi
echo "ncu: $NCU"; "$NCU" --version | tail -1; nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv
# tensor-pipe counters this ncu knows for GH100 (names differ between versions: ask, then use what exists)
"$NCU" --query-metrics --chip gh100 2>/dev/null | awk '{print $1}' | grep -E 'pipe_tensor|gmma' > "$OUT/tensor_metrics.txt"
extra=""
for m in sm__pipe_tensor_op_gmma_cycles_active sm__pipe_tensor_op_hmma_cycles_active sm__inst_executed_pipe_tensor_op_gmma \
         sm__pipe_tensor_cycles_active sm__pipe_shared_cycles_active; do
  grep -qx "$m" "$OUT/tensor_metrics.txt" && extra="$extra,$m.avg.pct_of_peak_sustained_active"
done
extra=${extra#,}
echo "extra metrics: $extra"
timeout 300 "$NCU" --clock-control none --profile-from-start off --target-processes all \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis ${extra:+--metrics $extra} \
  -f -o "$OUT/wgmma" python3 benchmarks/wgmma_ab.py --profile --variants "$variants" 2>&1 | grep -v '^==PROF==' | tail -30
"$NCU" --import "$OUT/wgmma.ncu-rep" --page raw --csv > "$OUT/raw.csv" 2>/dev/null
"$NCU" --import "$OUT/wgmma.ncu-rep" --page details --csv > "$OUT/details.csv" 2>/dev/null
python3 benchmarks/ncu_summary.py "$OUT/raw.csv" | tee "$OUT/summary.txt"
timeout 200 python3 benchmarks/wgmma_ab.py --time --rounds 5 --variants "$variants" 2>&1 | tee "$OUT/time.txt"
