#!/bin/bash
# Twenty-first session (nvidia-h200): the bar's rows by graph replay with a new column order every round (seeded
# shuffle: a column's predecessor varies), two A/A copies of the two-consumer tile (alt1, alt2) and EARLY_QUERY (alt3);
# the SM clock, power draw and throttle reasons logged every 100 ms meanwhile.
export PYTHONUNBUFFERED=1 AUTOFLASH_CACHE_DIR=/tmp/afcache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks:$PWD/tests || exit 1
D=$(date +%Y-%m-%d)
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,power.limit,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv,noheader -lms 100 > /tmp/smi.csv 2>&1 &
SMI=$!
timeout 400 python3 benchmarks/bench_backward_graph.py --rounds 11 \
  --alt 64x128x12x2,64x128x12x2,64x128x12x2:EARLY_QUERY 2>&1 | grep -v -i "warn\|no tuned config\|return Impl" \
  | tee $OUT/bench_backward_graph_shuffled_h200_${D}_s21b.log
kill $SMI
gzip -c /tmp/smi.csv > $OUT/smi_h200_${D}_s21b.csv.gz
python3 - <<'PY' | tee $OUT/smi_summary_h200_${D}_s21b.txt
import collections, statistics
rows = [l.split(", ") for l in open("/tmp/smi.csv") if l.count(",") >= 6]
clk = [int(r[1].split()[0]) for r in rows if r[1].split()[0].isdigit()]
pw = [float(r[3].split()[0]) for r in rows if r[3].split()[0].replace(".", "").isdigit()]
print(f"{len(rows)} samples; SM clock MHz: min {min(clk)} median {statistics.median(clk)} max {max(clk)}; "
      f"power W: median {statistics.median(pw):.0f} max {max(pw):.0f} (limit {rows[0][4]})")
print("SM clock histogram:", sorted(collections.Counter(c // 50 * 50 for c in clk).items()))
print("throttle reasons:", collections.Counter(r[6].strip() for r in rows).most_common(6))
PY
