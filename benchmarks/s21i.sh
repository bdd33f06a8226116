#!/bin/bash
# Twenty-first session (nvidia-h200), the closing check on the session's last product code (PERSISTENT and TAIL_WAVES
# on): the whole GPU suite and autoflash verify.
export PYTHONUNBUFFERED=1
XDIST=15 TESTS_TIMEOUT=280 TESTS_K="not paged_space" VERIFY_TIMEOUT=40 bash benchmarks/h200_final.sh tests verify
D=$(date +%Y-%m-%d)
mv $OUT/tests.log $OUT/tests_h200_${D}_s21i.log; mv $OUT/verify.log $OUT/verify_h200_${D}_s21i.log
