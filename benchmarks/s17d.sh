#!/bin/bash
# Seventeenth session, fourth call (nvidia-h200): the combination test after its gradient reference takes the
# kernel's delta (rowsum(dO o O) of the stored, rounded output): the default 150 cases, then 600 more (seed 777).
bash benchmarks/s17c.sh 2>&1 | tail -3
for f in $OUT/combinations*_s17c.*; do mv "$f" "${f/_s17c/_s17d}"; done
AUTOFLASH_COMBO_SEED=777 AUTOFLASH_COMBO_CASES=600 COMBO_WORKERS=14 bash benchmarks/s17c.sh 2>&1 | tail -3
for f in $OUT/combinations*_s17c.*; do mv "$f" "${f/_s17c/_s17d_seed777}"; done
