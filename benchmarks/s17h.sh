#!/bin/bash
# Seventeenth session, closing call (nvidia-h200): the GPU suite (with the combination test, the decode head-dim tests
# and the other new serve-path tests) and autoflash verify on the session's last code, then 600 more combination
# cases (seed 777); the logs renamed with the session's tag.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
SKIP_PIP=1 XDIST=20 TESTS_TIMEOUT=400 TESTS_K="not paged_space" bash benchmarks/h200_final.sh tests verify
D=$(date +%Y-%m-%d)
mv $OUT/tests.log $OUT/tests_h200_${D}_s17h.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s17h.log
AUTOFLASH_COMBO_SEED=777 AUTOFLASH_COMBO_CASES=600 COMBO_WORKERS=14 bash benchmarks/s17c.sh 2>&1 | tail -3
for f in $OUT/combinations*_s17c.*; do mv "$f" "${f/_s17c/_s17h_seed777}"; done
