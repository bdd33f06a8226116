#!/bin/bash
# Eighteenth session, fifth call (nvidia-h200): 600 more seeded combination cases (seed 1818) on the session's last code,
# where gradients at every multiple-of-8 head dim now run against float64 instead of being refused; the refusal summary.
AUTOFLASH_COMBO_SEED=1818 AUTOFLASH_COMBO_CASES=600 COMBO_WORKERS=14 bash benchmarks/s17c.sh 2>&1 | tail -40
for f in $OUT/combinations*_s17c.*; do mv "$f" "${f/_s17c/_s18e_seed1818}"; done
