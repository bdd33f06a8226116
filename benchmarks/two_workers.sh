#!/usr/bin/env bash
# Issue 8 on one GPU: two workers (`tune --devices 0,0`) share one journal storage with real
# kernels; then the same with the second worker killed mid-campaign. Timings are NOT meaningful
# here (two workers share the GPU); this proves the protocol: every trial once, nothing lost.
# Usage on the GPU machine (carry .whl): bash benchmarks/two_workers.sh
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
rm -f /tmp/two.journal /tmp/kill.journal
common=(--arch sm_90 --head-dim 128 --causal no --seq-len 4096 --trials 12 --timeout 60 --workers 7)

echo "== two workers, one GPU"
start=$(date +%s)
timeout 240 python3 -m autoflash.cli tune "${common[@]}" --dtype bf16,fp16 --devices 0,0 --storage /tmp/two.journal \
    --out "$OUT/two" --log "$OUT/two/log.json" 2>&1 | grep -v '^\s*$' | tail -12 | tee "$OUT/two.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/two.txt"
python3 benchmarks/check_campaign.py /tmp/two.journal | tee -a "$OUT/two.txt"

echo "== two workers, the second killed while it runs a trial"
start=$(date +%s)
timeout 240 python3 -m autoflash.cli tune "${common[@]}" --dtype fp16 --head-dim 64 --trials 24 --devices 0,0 \
    --storage /tmp/kill.journal --out "$OUT/kill" --log "$OUT/kill/log.json" > "$OUT/kill.txt" 2>&1 &
tune_pid=$!
# wait until the extra worker has a trial RUNNING in the storage, then SIGKILL it
python3 - <<'PY' 2>&1 | tee -a "$OUT/kill.txt"
import os, signal, subprocess, time
import optuna
from autoflash.tuning.storage import open_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
deadline = time.time() + 120
while time.time() < deadline:
    pids = subprocess.run(["pgrep", "-f", "autoflash.cli worker --storage /tmp/kill.journal"],
                          capture_output=True, text=True).stdout.split()
    if pids and os.path.exists("/tmp/kill.journal"):
        storage = open_storage("/tmp/kill.journal")
        for s in optuna.get_all_study_summaries(storage, include_best_trial=False):
            if not s.study_name.startswith("autoflash|"):
                continue
            running = [t for t in optuna.load_study(study_name=s.study_name, storage=storage).get_trials(deepcopy=False)
                       if t.state.name == "RUNNING" and t.user_attrs.get("worker", "").endswith(":" + pids[0])]
            if running:
                os.kill(int(pids[0]), signal.SIGKILL)
                print(f"killed worker {pids[0]} while it ran trial(s) {[t.number for t in running]}")
                raise SystemExit(0)
    time.sleep(0.5)
print("never saw the worker run a trial: nothing killed")
PY
wait $tune_pid; echo "tune exit status $?" | tee -a "$OUT/kill.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/kill.txt"
grep -E "lost|warning|merged" "$OUT/kill.txt" | cut -c1-200
python3 benchmarks/check_campaign.py /tmp/kill.journal | tee -a "$OUT/kill.txt"
