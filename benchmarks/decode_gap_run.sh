#!/usr/bin/env bash
# Helper DC's device calls (sixth session): the knob's GPU tests, Nsight Compute of our served config,
# two knob variants and cuDNN on two rows, then the knob A/B beside SDPA (decode_gap_probe.py); table last.
#   OUT=/tmp/o bash benchmarks/decode_gap_run.sh        (T_TESTS, T_NCU, T_AB: per-stage limits in s)
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/decode_gap}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
VARIANTS=${VARIANTS:-default,swizzle,bn16w4s3,bn16w4s3sw,sw_pf0}
NCU_ROWS=${NCU_ROWS:-d128 32/8 b64 n8192,d128 32/8 b64 n1024}
NCU_VARIANTS=${NCU_VARIANTS:-default,swizzle,bn16w4s3sw}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
t0=$(date +%s)
python3 benchmarks/decode_gap_probe.py --precompile-only --variants "$VARIANTS" > "$OUT/precompile.log" 2>&1 &
PRE=$!
timeout "${T_TESTS:-40}" python3 -m pytest -q -x -n 8 -p no:cacheprovider ${TESTS:-tests/test_decode_swizzle_gpu.py} \
    > "$OUT/tests.log" 2>&1
echo "tests: rc $? in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/tests.log")"
grep -m5 -E "^(FAILED|ERROR|E  )" "$OUT/tests.log"
wait $PRE; echo "precompile rc $? at $(( $(date +%s) - t0 )) s"; tail -n 2 "$OUT/precompile.log"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
STALLS=$(for r in long_scoreboard lg_throttle short_scoreboard mio_throttle wait barrier not_selected selected \
    math_pipe_throttle drain no_instruction branch_resolving dispatch_stall membar sleeping imc_miss tex_throttle; do
    printf "smsp__average_warps_issue_stalled_%s_per_issue_active.ratio," "$r"; done)
t1=$(date +%s)
timeout "${T_NCU:-30}" "$NCU" --clock-control none --nvtx --nvtx-include "prof/" -f -o "$OUT/gap_ncu" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
  --section WarpStateStats --section SchedulerStats \
  --metrics "${STALLS}dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_requests_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum,sm__warps_active.avg.pct_of_peak_sustained_active,l1tex__m_xbar2l1tex_read_sectors.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed,lts__d_sectors_fill_device.sum,gpu__time_duration.sum" \
  python3 benchmarks/decode_gap_probe.py --ncu --rows "$NCU_ROWS" --variants "$NCU_VARIANTS" > "$OUT/ncu.log" 2>&1
echo "ncu rc $? in $(( $(date +%s) - t1 )) s"; grep "ncu target" "$OUT/ncu.log" | head -8
"$NCU" -i "$OUT/gap_ncu.ncu-rep" --page details > "$OUT/ncu_details.txt" 2>&1
"$NCU" -i "$OUT/gap_ncu.ncu-rep" --page raw --csv > "$OUT/ncu_raw.csv" 2>&1
python3 - "$OUT/ncu_raw.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
if len(rows) < 3:
    sys.exit(print("no ncu rows"))
head, body = rows[0], rows[2:]
want = ["gpu__time_duration.sum", "dram__bytes_read.sum", "dram__throughput.avg.pct_of_peak_sustained_elapsed",
        "lts__throughput.avg.pct_of_peak_sustained_elapsed", "lts__t_sectors_srcunit_tex_op_read.sum",
        "lts__t_requests_srcunit_tex_op_read.sum", "lts__t_sector_hit_rate.pct", "lts__d_sectors_fill_device.sum",
        "sm__warps_active.avg.pct_of_peak_sustained_active", "launch__registers_per_thread", "launch__grid_size",
        "launch__occupancy_limit_shared_mem"]
stalls = [h for h in head if h.startswith("smsp__average_warps_issue_stalled_")]
for r in body:
    d = dict(zip(head, r))
    print(d.get("Kernel Name", "?")[:70])
    print("   " + "; ".join(f"{w.split('.')[0].replace('__', ':')} {d.get(w, '-')}" for w in want))
    top = sorted(((float(d[s] or 0), s) for s in stalls if d.get(s, "").replace(".", "", 1).isdigit()), reverse=True)[:6]
    print("   stalls/issue: " + ", ".join(f"{s.split('stalled_')[1].split('_per')[0]} {v:.2f}" for v, s in top))
PY
t2=$(date +%s)
timeout "${T_AB:-35}" python3 benchmarks/decode_gap_probe.py --rounds 3 --variants "$VARIANTS" \
    --json "$OUT/decode_gap_probe.json" > "$OUT/ab.log" 2>&1
echo "A/B rc $? in $(( $(date +%s) - t2 )) s (total $(( $(date +%s) - t0 )) s)"
grep -v -E "Warning|return F" "$OUT/ab.log" | tail -n 12
