#!/bin/bash
# One device call for the decode gap (benchmarks/NOTES.md, decode): decode GPU tests, the probe table
# (ceilings + knob variants vs cuDNN), Nsight Compute of ours vs cuDNN on one row; the table last.
# Logs in $OUT. Each stage has its own time limit so the call stays inside its budget.
set -o pipefail
OUT=${OUT:-/tmp/decode_probe_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/probe.log"
python benchmarks/decode_probe.py --precompile-only > "$OUT/precompile.log" 2>&1 &
PRE=$!
echo "== tests/test_decode_gpu.py" | tee -a "$OUT/probe.log"
timeout 80 python -m pytest -q -x -n 8 -p no:cacheprovider tests/test_decode_gpu.py > "$OUT/tests.log" 2>&1
echo "tests rc=$?" | tee -a "$OUT/probe.log"; tail -n 6 "$OUT/tests.log"
wait $PRE; echo "precompile rc=$?" | tee -a "$OUT/probe.log"
echo "== probe" | tee -a "$OUT/probe.log"
timeout 110 python benchmarks/decode_probe.py --rounds 3 > "$OUT/table.log" 2>&1
echo "probe rc=$?" | tee -a "$OUT/probe.log"
echo "== ncu" | tee -a "$OUT/probe.log"
timeout 60 ncu --clock-control none --nvtx --nvtx-include "prof/" --launch-count 4 -f -o "$OUT/decode_ncu" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
  --section WarpStateStats --section SchedulerStats \
  --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,dram__cycles_elapsed.avg.per_second,sm__cycles_elapsed.avg.per_second,lts__t_sectors_srcunit_tex_op_read.sum \
  python benchmarks/decode_probe.py --ncu > "$OUT/ncu.log" 2>&1
echo "ncu rc=$?" | tee -a "$OUT/probe.log"; tail -n 3 "$OUT/ncu.log"
ncu -i "$OUT/decode_ncu.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>&1
grep -E "^  [a-z_]|Duration|DRAM Throughput|Memory Throughput|dram__|lts__t_sector_hit|Achieved Occupancy|Theoretical Occ|Registers Per|Grid Size|Block Size|Dynamic Shared|Waves Per SM|Warp Cycles Per Issued|sm__warps_active|cycles_elapsed.avg.per_second|Issued Warp|No Eligible" \
  "$OUT/ncu_details.txt" | cut -c1-150
echo "== table"; sed -n '/^ceilings/,$p' "$OUT/table.log"
