#!/usr/bin/env bash
# Issue 8 on one GPU: two workers (`tune --devices 0,0`) share one journal storage with real
# kernels; then the same with the second worker killed mid-campaign. Timings are NOT meaningful
# here (two workers share the GPU); this proves the protocol: every trial once, nothing lost.
# Usage on the GPU machine (carry .whl): bash benchmarks/two_workers.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
common=(--arch sm_90 --head-dim 128 --causal no --seq-len 4096 --trials 12 --timeout 60 --workers 7)

echo "== two workers, one GPU"
start=$(date +%s)
timeout 240 python3 -m autoflash.cli tune "${common[@]}" --dtype bf16,fp16 --devices 0,0 --storage /tmp/two.journal \
    --out "$OUT/two" --log "$OUT/two/log.json" 2>&1 | grep -v '^\s*$' | tail -12 | tee "$OUT/two.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/two.txt"
python3 benchmarks/check_campaign.py /tmp/two.journal | tee -a "$OUT/two.txt"

echo "== two workers, the second killed after 25 s"
start=$(date +%s)
timeout 240 python3 -m autoflash.cli tune "${common[@]}" --dtype bf16 --devices 0,0 --storage /tmp/kill.journal \
    --out "$OUT/kill" --log "$OUT/kill/log.json" > "$OUT/kill.txt" 2>&1 &
tune_pid=$!
sleep 25
worker=$(pgrep -f "autoflash.cli worker --storage /tmp/kill.journal" | head -1)
echo "killing worker pid ${worker:-none} (its runner subprocess dies with it)" | tee -a "$OUT/kill.txt"
[ -n "$worker" ] && kill -9 "$worker"
wait $tune_pid; echo "tune exit status $?" | tee -a "$OUT/kill.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/kill.txt"
grep -E "lost|warning|merged" "$OUT/kill.txt" | cut -c1-200
python3 benchmarks/check_campaign.py /tmp/kill.journal | tee -a "$OUT/kill.txt"
